"""SQLite wake-ups: a commit by another connection wakes an idle worker's claim loop."""

from __future__ import annotations

import asyncio

import relaybox
from _outbox_helpers import fast_config
from relaybox.store import open_store
from relaybox.store.sqlite_watch import DataVersionWatcher


async def test_a_commit_from_another_connection_wakes_the_watcher(sqlite_url: str):
    rb = relaybox.open(sqlite_url, config=fast_config())
    other = open_store(sqlite_url, run_migrations=False)  # another connection, as another process
    woken = asyncio.Event()
    wakes = 0

    def wake() -> None:
        nonlocal wakes
        wakes += 1
        woken.set()

    watcher = rb.store.connector.wake_source(["mem"], wake)
    assert isinstance(watcher, DataVersionWatcher)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(woken.wait(), 5)  # the first wake-up: "look once on start"
        assert watcher.listening and wakes == 1
        woken.clear()
        rb2 = relaybox.Relaybox(other, rb.config)
        # While the claim loop is busy (not waiting), a commit wakes nobody ...
        await rb2.enqueue(channel="mem", thread_id="t", recipient="r", parts=["busy"])
        await asyncio.sleep(0.05)
        assert wakes == 1
        # ... and the reference point is taken when a wait ends, before the next claim.
        watcher.set_waiting(False)
        watcher.set_waiting(True)
        await asyncio.sleep(0.05)
        assert wakes == 1  # nothing committed since: no wake-up
        await rb2.enqueue(channel="mem", thread_id="t", recipient="r", parts=["hello"])
        await asyncio.wait_for(woken.wait(), 5)
        assert wakes == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        other.close()
        rb.close()
    assert not watcher.listening


def test_in_memory_sqlite_has_no_watcher():
    store = open_store("sqlite:///:memory:")
    try:
        assert store.connector.wake_source(["mem"], lambda: None) is None
    finally:
        store.close()
