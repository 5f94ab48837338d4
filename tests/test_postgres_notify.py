"""LISTEN/NOTIFY on PostgreSQL: a new reply wakes an idle worker; a slow poll is the safety net.

Most tests here configure a poll interval of an hour, so a worker that delivers anything after
going idle can only have been woken by a notification.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

import relaybox
from _harness import terminate_backends
from conftest import PG_URL
from relaybox.config import Config, parse_config
from relaybox.outbox import transitions as tr
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Tx
from relaybox.store.postgres_listen import CHANNEL
from relaybox.store.sqlite_watch import DataVersionWatcher
from relaybox.transports.memory import MemoryTransport
from relaybox.worker.worker import LISTENING_POLL_SECONDS, POLL_SECONDS

NEVER = 3600.0  # a poll interval that never comes round during a test


def _config(poll_interval_seconds: float | None = NEVER) -> Config:
    worker = {"lease_seconds": 1.0, "shutdown_grace_seconds": 2.0}
    if poll_interval_seconds is not None:
        worker["poll_interval_seconds"] = poll_interval_seconds
    return parse_config({"worker": worker, "channels": {"mem": {"transport": "memory"}}})


async def _eventually(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached before the timeout"
        await asyncio.sleep(0.01)


class Running:
    """A worker running in this event loop on ``rb``'s store, with a memory transport."""

    def __init__(self, rb: relaybox.Relaybox) -> None:
        self.transport = MemoryTransport()
        self.worker = relaybox.Worker(rb.store, rb.config, transports={"mem": self.transport})
        self.task = asyncio.create_task(self.worker.run())

    async def idle(self) -> None:
        """Wait until the listener is up and the worker has gone to sleep on its poll."""
        notifier = self.worker.notifier
        assert notifier is not None
        await _eventually(lambda: notifier.listening)
        await asyncio.sleep(0.3)  # the wake-up after LISTEN has been served; nothing left

    async def stop(self) -> None:
        self.worker.stop()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def rb(pg_url: str) -> AsyncIterator[relaybox.Relaybox]:
    handle = relaybox.open(pg_url, config=_config())
    yield handle
    handle.close()


async def test_enqueue_wakes_an_idle_worker(rb: relaybox.Relaybox) -> None:
    running = Running(rb)
    try:
        for n in range(3):
            await running.idle()
            await rb.enqueue(channel="mem", thread_id=f"t{n}", recipient="a", parts=[f"hi {n}"])
            await _eventually(lambda n=n: len(running.transport.seen) == n + 1)
    finally:
        await running.stop()
    assert running.transport.texts() == ["hi 0", "hi 1", "hi 2"]


async def test_release_for_retry_now_wakes_an_idle_worker(rb: relaybox.Relaybox) -> None:
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["x"])).delivery
    [held] = await rb.store.run(tr.claim("other-worker", ["mem"], 10, lease_seconds=60))
    running = Running(rb)
    try:
        await running.idle()  # the thread is held by the other worker: nothing to claim
        assert running.transport.wire == []
        released = tr.release(
            tr.Lease(held.id, held.lease_epoch),
            delay_seconds=0.0,
            refund_attempt=True,
            error="shutting down",
            clear_in_flight=True,
        )
        assert await rb.store.run(released)
        await _eventually(lambda: len(running.transport.seen) == 1)
    finally:
        await running.stop()
    assert (await rb.delivery(d.id)).status is relaybox.Status.DELIVERED


async def test_operator_requeue_wakes_an_idle_worker(rb: relaybox.Relaybox) -> None:
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["x"])).delivery
    [held] = await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=60))
    await rb.store.run(tr.finish(tr.Lease(held.id, held.lease_epoch), relaybox.Status.FAILED, "x"))
    running = Running(rb)
    try:
        await running.idle()
        await rb.store.run(tr.requeue(d.id, reason="operator retry"))
        await _eventually(lambda: len(running.transport.seen) == 1)
    finally:
        await running.stop()


async def test_listener_reconnects_after_its_connection_is_killed(rb: relaybox.Relaybox) -> None:
    running = Running(rb)
    notifier = running.worker.notifier
    assert notifier is not None
    try:
        await running.idle()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            [(killed,)] = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"relaybox-listen-{os.getpid()}",),
            ).fetchall()
        assert killed == 1
        await _eventually(lambda: notifier.reconnects >= 1 and notifier.listening)
        await running.idle()
        await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["after"])
        await _eventually(lambda: len(running.transport.seen) == 1)
    finally:
        await running.stop()


async def test_worker_polls_fast_while_it_is_cut_off_from_notifications(pg_url: str) -> None:
    """Default poll: slow while LISTEN is up; fast while the listener cannot reconnect."""
    rb = relaybox.open(pg_url, config=_config(poll_interval_seconds=None))
    running = Running(rb)
    notifier = running.worker.notifier
    assert notifier is not None
    try:
        await _eventually(lambda: notifier.listening)
        assert running.worker.poll_seconds() == LISTENING_POLL_SECONDS
        notifier.url = "postgresql://postgres@127.0.0.1:1/nowhere"  # reconnecting will fail
        terminate_backends(PG_URL, os.getpid())  # the store's and the listener's connections
        await _eventually(lambda: notifier.reconnects >= 2 and not notifier.listening)
        assert running.worker.poll_seconds() == POLL_SECONDS
        await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["x"])
        await _eventually(lambda: len(running.transport.seen) == 1)  # found by polling
    finally:
        await running.stop()
        rb.close()


def test_poll_interval_defaults(sqlite_url: str) -> None:
    rb = relaybox.open(sqlite_url, config=_config(poll_interval_seconds=None))
    try:
        worker = relaybox.Worker(rb.store, rb.config)
        # SQLite is watched for commits (store/sqlite_watch.py); until the watcher runs, poll fast.
        assert isinstance(worker.notifier, DataVersionWatcher)
        assert not worker.notifier.listening and worker.poll_seconds() == POLL_SECONDS
        configured = relaybox.Worker(rb.store, _config(poll_interval_seconds=0.2))
        assert configured.poll_seconds() == 0.2
    finally:
        rb.close()


def test_notification_is_sent_at_commit_and_dropped_on_rollback(pg_url: str) -> None:
    """The server is shared, so the channel has a name no other test uses."""
    channel = f"mem-{uuid.uuid4().hex}"
    config = parse_config({"channels": {channel: {"transport": "memory"}}})
    rb = relaybox.open(pg_url, config=config)
    listener = psycopg.connect(PG_URL, autocommit=True)
    try:
        listener.execute(f"LISTEN {CHANNEL}")
        request = build_request(config.channel(channel), thread_id="t", recipient="a", parts=["x"])

        def enqueue_then_fail(tx: Tx) -> None:
            EnqueueUnit(request)(tx)
            raise RuntimeError("the surrounding work failed")

        with pytest.raises(RuntimeError):
            rb.store.run_sync(enqueue_then_fail)
        assert _notifications(listener, channel) == []
        rb.store.run_sync(EnqueueUnit(request))
        assert _notifications(listener, channel) == [channel]
    finally:
        listener.close()
        rb.close()


def _notifications(conn: psycopg.Connection[tuple[object, ...]], channel: str) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.5) if n.payload == channel]
