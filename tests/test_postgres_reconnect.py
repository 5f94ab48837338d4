"""The database connection dies under a running worker (pg_terminate_backend): nothing is lost.

Connections are found by their application_name, ``relaybox-<role>-<pid>``; only this test
process's own connections are terminated (the server is shared with other tests).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter, defaultdict

import psycopg
import pytest

import relaybox
from _harness import terminate_backends
from _outbox_helpers import fast_config
from conftest import PG_URL
from relaybox.store import Tx, open_store
from relaybox.transports.base import OutgoingPart, SendResult
from relaybox.transports.memory import MemoryTransport

MARK = "relaybox-test-cut-here"


def _kill_when_running(marker: str, timeout: float = 10.0) -> threading.Thread:
    """In the background: terminate this process's backend once it runs a query with marker."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            while time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND state = 'active' AND query LIKE %s",
                    (f"relaybox-store-{os.getpid()}", f"%{marker}%"),
                ).fetchone()
                if row is not None:
                    return
                time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_connection_lost_while_idle_is_replaced_without_an_error(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        assert store.run_sync(lambda tx: tx.fetch_all("schema_version")) != []
        assert store.read_sync(lambda tx: tx.fetch_all("schema_version")) != []
        # The writer's connection and the idle read connection.
        assert terminate_backends(PG_URL, os.getpid()) == 2
        assert store.run_sync(lambda tx: tx.fetch_all("schema_version")) != []
        assert store.read_sync(lambda tx: tx.fetch_all("schema_version")) != []
    finally:
        store.close()


def test_connection_lost_mid_transaction_is_a_clear_error_and_keeps_what_was_stored(
    pg_url: str,
) -> None:
    rb = relaybox.open(pg_url, config=fast_config())
    try:
        kept = asyncio.run(
            rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["kept"])
        ).delivery

        def slow(tx: Tx) -> None:
            tx.execute_script(f"SELECT pg_sleep(10) /* {MARK} */")

        killer = _kill_when_running(MARK)
        with pytest.raises(relaybox.StoreUnavailable, match="store connection lost"):
            rb.store.run_sync(slow)
        killer.join()
        assert asyncio.run(rb.delivery(kept.id)).parts[0].body == "kept"
    finally:
        rb.close()


class CutWhileRecording(MemoryTransport):
    """Sends the second part, then has the store connection die in the batch that records it.

    Before answering, it occupies the store's writer with a slow unit that queues a marked
    query behind itself; the part's cursor write then joins the marked query's batch, and the
    connection is terminated while that query runs.
    """

    def __init__(self, rb: relaybox.Relaybox, *, dedup: bool) -> None:
        super().__init__(dedup=dedup)
        self.store = rb.store
        self.cut = False

    async def send(self, part: OutgoingPart) -> SendResult:
        result = await super().send(part)
        if part.index == 1 and not self.cut:
            self.cut = True
            busy = threading.Event()

            def occupy_writer(tx: Tx) -> None:
                self.store.submit(lambda tx: tx.execute_script(f"SELECT pg_sleep(10) -- {MARK}"))
                busy.set()
                tx.execute_script("SELECT pg_sleep(0.5)")

            self.store.submit(occupy_writer)
            await asyncio.to_thread(busy.wait, 10)
            _kill_when_running(MARK)
        return result


@pytest.mark.parametrize("dedup", [True, False], ids=["resend-same-guid", "reconcile"])
async def test_part_whose_cursor_write_failed_is_an_ambiguous_send(
    pg_url: str, dedup: bool
) -> None:
    rb = relaybox.open(pg_url, config=fast_config(dedup=dedup))
    try:
        d = (
            await rb.enqueue(
                channel="mem", thread_id="t", recipient="a", parts=["one", "two", "three"]
            )
        ).delivery
        transport = CutWhileRecording(rb, dedup=dedup)
        worker = relaybox.Worker(rb.store, rb.config, transports={"mem": transport})
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 20
            while await _statuses(rb) != {"delivered"}:
                assert time.monotonic() < deadline, "not delivered in time"
                await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
        attempts = await rb.attempts(d.id)
    finally:
        rb.close()
    assert transport.texts() == ["one", "two", "three"]  # the user saw each part once
    second = d.parts[1].guid
    wire = [p.guid for p in transport.wire]
    [failed] = [a for a in attempts if "recording it failed" in (a.error or "")]
    assert failed.guid == second and failed.outcome == "surfaced"
    later = [a for a in attempts if a.guid == second and a.id > failed.id]
    if dedup:  # resent under the same GUID; the far side recognised it
        assert wire.count(second) == 2
        assert [a.outcome for a in later] == ["duplicate"]
    else:  # never resent blindly: the transport was asked whether it arrived
        assert wire.count(second) == 1
        assert [a.outcome for a in later] == ["reconciled_surfaced"]


async def test_worker_keeps_delivering_while_its_connections_are_killed(pg_url: str) -> None:
    """Every connection of this process is terminated again and again during delivery."""
    rb = relaybox.open(pg_url, config=fast_config())
    expected: dict[str, list[str]] = defaultdict(list)
    try:
        for n in range(40):
            thread = f"chat-{n % 8}"
            texts = [f"{n}.{i}" for i in range(3)]
            await rb.enqueue(channel="mem", thread_id=thread, recipient="a", parts=texts)
            expected[thread] += texts
        transport = MemoryTransport(delay_seconds=0.01)
        worker = relaybox.Worker(rb.store, rb.config, transports={"mem": transport})
        task = asyncio.create_task(worker.run())
        terminated = 0
        try:
            deadline = time.monotonic() + 60
            while len(transport.seen) < 120:
                # Cut every connection, then wait for delivery to make progress again.
                terminated += await asyncio.to_thread(terminate_backends, PG_URL, os.getpid())
                target = min(120, len(transport.seen) + 10)
                while len(transport.seen) < target:
                    assert time.monotonic() < deadline, f"only {len(transport.seen)} parts seen"
                    await asyncio.sleep(0.005)
            while await _statuses(rb) != {"delivered"}:
                assert time.monotonic() < deadline, "not all recorded as delivered"
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
        attempts = [a for d in await _all(rb) for a in await rb.attempts(d.id)]
    finally:
        rb.close()
    assert terminated >= 5
    for thread, texts in expected.items():
        assert transport.texts(thread) == texts
    # Every send is on record, including sends whose recording was cut off.
    recorded = Counter(a.guid for a in attempts if a.guid is not None)
    for guid, sends in Counter(p.guid for p in transport.wire).items():
        assert recorded[guid] >= sends, guid


async def _all(rb: relaybox.Relaybox) -> list[relaybox.Delivery]:
    return await rb.deliveries(limit=1000)


async def _statuses(rb: relaybox.Relaybox) -> set[str]:
    """The statuses of all deliveries; empty while the (shared) connection is being cut."""
    try:
        return {str(d.status) for d in await _all(rb)}
    except relaybox.StoreUnavailable:
        return set()
