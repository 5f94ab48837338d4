"""Acknowledged parts recorded in batches: each part's result is what it would be alone."""

from __future__ import annotations

import asyncio

import pytest

import relaybox
from _outbox_helpers import acked_part, fast_config
from relaybox.models import Status
from relaybox.outbox import transitions as tr
from relaybox.worker.acks import AckBatcher
from relaybox.worker.heartbeat import renew_once
from relaybox.worker.runner import HeldDelivery


@pytest.fixture
def rb(store_url: str) -> relaybox.Relaybox:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


async def _enqueue(rb: relaybox.Relaybox, thread: str, parts: int) -> None:
    texts = [f"{thread} {i}" for i in range(parts)]
    await rb.enqueue(channel="mem", thread_id=thread, recipient="r", parts=texts)


async def test_results_match_single_writes(rb: relaybox.Relaybox):
    await _enqueue(rb, "a", 3)
    await _enqueue(rb, "b", 1)
    await _enqueue(rb, "c", 2)
    a, b, c = sorted(
        await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30)), key=lambda d: d.thread_id
    )
    stale_c = tr.SentPart(
        tr.Lease(c.id, c.lease_epoch - 1), 0, "surfaced", None, acked_part(c, 0, last=False).attempt
    )
    # a: a middle part; b: its only part, flagged wrongly as not last; c: a stale lease
    results = await rb.store.run(
        tr.record_sent_many([acked_part(a, 0, last=False), acked_part(b, 0, last=False), stale_c])
    )
    assert results.moved == [True, True, False]
    assert results.next_heads == []  # no reply waits behind a or b
    da, db, dc = (await rb.delivery(a.id), await rb.delivery(b.id), await rb.delivery(c.id))
    assert (da.status, da.start_index) == (Status.SENDING, 1)
    assert (db.status, db.start_index) == (Status.DELIVERED, 1) and db.finished_at is not None
    assert db.lease_owner is None
    assert (dc.status, dc.start_index) == (Status.SENDING, 0)
    assert [p.outcome for p in da.parts] == ["surfaced", None, None]
    assert da.parts[0].transport_message_id == "m0"
    assert [p.outcome for p in dc.parts] == [None, None]
    [row_c] = await rb.attempts(c.id)
    assert "lease lost" in (row_c.error or "")
    [row_a] = await rb.attempts(a.id)
    assert row_a.error is None and row_a.part_index == 0 and row_a.outcome == "surfaced"


async def test_a_delivered_reply_names_its_threads_next_head_which_is_claimed_by_id(
    rb: relaybox.Relaybox,
):
    for thread, replies in (("x", 3), ("y", 1)):
        for _ in range(replies):
            await _enqueue(rb, thread, 1)
    first = await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30))
    x1, y1 = sorted(first, key=lambda d: d.thread_id)
    x2, x3 = sorted(d.id for d in await rb.deliveries(thread_id="x"))[1:]
    # A non-head named as a candidate is not claimed: x2 waits behind x1, which is sending.
    assert await rb.store.run(tr.claim("w", ["mem"], 10, 30, among=[x2, x3])) == []
    assert await rb.store.run(tr.claim("w", ["mem"], 10, 30, among=[])) == []
    done = await rb.store.run(
        tr.record_sent_many([acked_part(x1, 0, last=True), acked_part(y1, 0, last=True)])
    )
    assert done.moved == [True, True]
    assert done.next_heads == [x2]  # y had nothing queued behind y1
    # Claimed by id, without a scan: x2 only (x3 still waits behind it; y1 is delivered).
    got = await rb.store.run(tr.claim("w", ["mem"], 10, 30, among=[x2, x3, y1.id]))
    assert [d.id for d in got] == [x2]
    assert got[0].parts[0].body == "x 0"


async def test_one_part_per_delivery_per_batch(rb: relaybox.Relaybox):
    await _enqueue(rb, "a", 2)
    [a] = await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30))
    with pytest.raises(ValueError, match="at most one part per delivery"):
        tr.record_sent_many([acked_part(a, 0, last=False), acked_part(a, 0, last=False)])


async def test_batcher_settles_every_waiter_with_its_own_result(rb: relaybox.Relaybox):
    for n in range(40):
        await _enqueue(rb, f"t{n}", 2)
    claimed = await rb.store.run(tr.claim("w", ["mem"], 100, lease_seconds=30))
    assert len(claimed) == 40
    batcher = AckBatcher(rb.store)
    stale = claimed[0]
    stale_part = tr.SentPart(
        tr.Lease(stale.id, stale.lease_epoch + 5), 0, "surfaced", None,
        acked_part(stale, 0, last=False).attempt,
    )  # fmt: skip
    first = [acked_part(d, 0, last=False) for d in claimed[1:]]
    # Two parts of one delivery in the same turn go out in two batches, in order.
    again = claimed[1]
    results = await asyncio.gather(
        *(batcher.record_sent(s) for s in [stale_part, *first, acked_part(again, 1, last=True)]),
    )
    assert results == [False] + [True] * 39 + [True]
    assert (await rb.delivery(again.id)).status is Status.DELIVERED
    rest = claimed[2:]
    second = await asyncio.gather(*(batcher.record_sent(acked_part(d, 1, last=True)) for d in rest))
    assert all(second)
    for d in rest:
        assert (await rb.delivery(d.id)).status is Status.DELIVERED
    assert (await rb.delivery(stale.id)).start_index == 0


async def test_batcher_reports_a_closed_store_to_every_waiter(rb: relaybox.Relaybox):
    from relaybox.errors import StoreUnavailable

    await _enqueue(rb, "a", 2)
    [a] = await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30))
    batcher = AckBatcher(rb.store)
    rb.store.close()
    with pytest.raises(StoreUnavailable):
        await batcher.record_sent(acked_part(a, 0, last=False))


async def test_renew_extends_only_leases_still_held(rb: relaybox.Relaybox):
    for n in range(3):
        await _enqueue(rb, f"r{n}", 1)
    a, b, c = sorted(
        await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30)), key=lambda d: d.id
    )
    await rb.cancel(c.id)  # an operator stops c: its lease is gone
    stale_b = tr.Lease(b.id, b.lease_epoch - 1)  # an older claim of b, taken over since
    before = (await rb.delivery(a.id)).lease_expires_at
    kept = await rb.store.run(
        tr.renew([tr.Lease(a.id, a.lease_epoch), stale_b, tr.Lease(c.id, c.lease_epoch)], 120)
    )
    assert kept == {a.id}
    assert (await rb.delivery(a.id)).lease_expires_at > before + 60
    assert await rb.store.run(tr.renew([], 120)) == set()


async def test_heartbeat_does_not_call_a_delivery_finished_meanwhile_lost(rb: relaybox.Relaybox):
    """A delivery completed while a renewal was on its way is not reported as a lost lease."""
    await _enqueue(rb, "done", 1)
    await _enqueue(rb, "gone", 1)
    done, gone = sorted(
        await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30)), key=lambda d: d.thread_id
    )
    recorded = await rb.store.run(tr.record_sent_many([acked_part(done, 0, last=True)]))
    assert recorded.moved == [True]
    await rb.cancel(gone.id)  # an operator took this one away: its worker must stop
    held = [HeldDelivery(d, tr.Lease(d.id, d.lease_epoch)) for d in (done, gone)]
    lost: list[int] = []
    # The worker finished `done` meanwhile (no longer held); it still holds `gone`.
    await renew_once(rb.store, held, 30, lambda d: lost.append(d.id), still_held=lambda: held[1:])
    assert lost == [gone.id]
    assert not held[0].lost and held[1].lost
