"""Behavioural tests of the outbox (spec C1), run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until, status_is
from relaybox.models import Outcome, Status
from relaybox.outbox import transitions as tr
from relaybox.outbox.guid import part_guid
from relaybox.transports.base import (
    NOT_SENT,
    AmbiguousSend,
    OutgoingPart,
    PermanentError,
    RateLimited,
    SendResult,
    TransientError,
    Unavailable,
)
from relaybox.transports.memory import MemoryTransport


@pytest.fixture
def rb(store_url: str) -> relaybox.Relaybox:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


async def enqueue(rb: relaybox.Relaybox, thread: str = "chat-1", parts: int = 4, **kw: object):
    texts = [f"{thread} part {i + 1}" for i in range(parts)]
    result = await rb.enqueue(channel="mem", thread_id=thread, recipient="alice", parts=texts, **kw)
    return result.delivery


# -- enqueue -------------------------------------------------------------------------------


async def test_enqueue_assigns_stable_guids_and_reply_key_is_idempotent(rb: relaybox.Relaybox):
    first = await rb.enqueue(
        channel="mem",
        thread_id="chat-1",
        recipient="alice",
        parts=["a", "b", "c"],
        reply_key="inbound-7:reply",
    )
    again = await rb.enqueue(
        channel="mem",
        thread_id="chat-1",
        recipient="alice",
        parts=["a", "b", "c"],
        reply_key="inbound-7:reply",
    )
    assert first.created and not again.created
    assert again.delivery.id == first.delivery.id
    guids = [p.guid for p in first.delivery.parts]
    assert guids == [part_guid("inbound-7:reply", i) for i in range(3)]
    assert [p.guid for p in again.delivery.parts] == guids
    assert len(set(guids)) == 3
    assert len(await rb.deliveries()) == 1


def test_guids_are_the_same_in_another_process():
    code = "from relaybox.outbox.guid import part_guid; print(part_guid('k-1', 2))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == part_guid("k-1", 2)


async def test_reply_key_reused_for_other_content_is_rejected(rb: relaybox.Relaybox):
    await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["x"], reply_key="k")
    with pytest.raises(relaybox.ReplyKeyConflict, match="already used for a different reply"):
        await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["y"], reply_key="k")
    [only] = await rb.deliveries()
    assert (await rb.delivery(only.id)).parts[0].body == "x"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "at least one part"),
        (["ok", ""], "part 2 is empty"),
        (["   "], "part 1 is empty"),
        (["x" * 5000], "part 1 is 5000 bytes"),
        ([b"\xff\xfe"], "not valid UTF-8"),
        (["bad \udcff surrogate"], "not valid UTF-8"),
        ([3], "must be text"),
    ],
)
async def test_bad_replies_are_rejected_and_nothing_is_stored(
    rb: relaybox.Relaybox, parts: list[object], message: str
):
    await enqueue(rb, "keep")
    with pytest.raises(relaybox.InvalidReply, match=message):
        await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=parts)  # type: ignore[arg-type]
    [kept] = await rb.deliveries()
    assert kept.thread_id == "keep" and len((await rb.delivery(kept.id)).parts) == 4


async def test_unknown_channel_and_empty_ids_are_rejected(rb: relaybox.Relaybox):
    with pytest.raises(relaybox.UnknownChannel, match="unknown channel 'sms'"):
        await rb.enqueue(channel="sms", thread_id="t", recipient="a", parts=["x"])
    with pytest.raises(relaybox.InvalidReply, match="thread id"):
        await rb.enqueue(channel="mem", thread_id="", recipient="a", parts=["x"])
    with pytest.raises(relaybox.InvalidReply, match="recipient"):
        await rb.enqueue(channel="mem", thread_id="t", recipient=" ", parts=["x"])
    assert await rb.deliveries() == []


# -- delivery and ordering -----------------------------------------------------------------


async def test_parts_arrive_once_in_order_per_thread_and_threads_run_in_parallel(
    rb: relaybox.Relaybox,
):
    in_flight: dict[str, int] = defaultdict(int)
    most_in_flight: dict[str, int] = defaultdict(int)
    overall = {"now": 0, "max": 0}

    class Tracking(MemoryTransport):
        async def send(self, part: OutgoingPart) -> SendResult:
            in_flight[part.thread_id] += 1
            overall["now"] += 1
            most_in_flight[part.thread_id] = max(
                most_in_flight[part.thread_id], in_flight[part.thread_id]
            )
            overall["max"] = max(overall["max"], overall["now"])
            await asyncio.sleep(0.002)
            try:
                return await super().send(part)
            finally:
                in_flight[part.thread_id] -= 1
                overall["now"] -= 1

    transport = Tracking()
    expected: dict[str, list[str]] = defaultdict(list)
    for n in range(30):
        thread = f"chat-{n % 5}"
        d = await rb.enqueue(
            channel="mem", thread_id=thread, recipient="a", parts=[f"{n}.{i}" for i in range(3)]
        )
        expected[thread] += [p.body for p in d.delivery.parts]
    await run_worker_until(rb, transport, lambda: len(transport.seen) == 90, concurrency=16)
    for thread, texts in expected.items():
        assert transport.texts(thread) == texts
    assert max(most_in_flight.values()) == 1, "two deliveries of one thread were in flight"
    assert overall["max"] > 1, "threads should be delivered in parallel"
    assert len(transport.wire) == 90
    statuses = {d.status for d in await rb.deliveries()}
    assert statuses == {Status.DELIVERED}


async def test_delivered_history_is_kept_with_attempt_rows(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=2)
    transport = MemoryTransport()
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    stored = await rb.delivery(d.id)
    assert stored.start_index == 2 and stored.finished_at is not None
    assert [p.outcome for p in stored.parts] == ["surfaced", "surfaced"]
    assert all(p.transport_message_id for p in stored.parts)
    attempts = await rb.attempts(d.id)
    assert [(a.part_index, a.outcome, a.guid) for a in attempts] == [
        (0, "surfaced", stored.parts[0].guid),
        (1, "surfaced", stored.parts[1].guid),
    ]
    assert all(a.latency_ms is not None and a.worker_id for a in attempts)
    assert all(a.correlation_id == stored.correlation_id for a in attempts)


async def test_duplicate_outcome_counts_as_delivered(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=2)
    transport = MemoryTransport(script=lambda p: SendResult(Outcome.DUPLICATE, "far-1"))
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [p.outcome for p in (await rb.delivery(d.id)).parts] == ["duplicate", "duplicate"]


# -- fencing -------------------------------------------------------------------------------


async def test_worker_that_lost_its_lease_cannot_move_the_cursor(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=3)
    [old] = await rb.store.run(tr.claim("worker-a", ["mem"], 10, lease_seconds=0.05))
    old_lease = tr.Lease(old.id, old.lease_epoch)
    await asyncio.sleep(0.1)  # worker-a stalls past its lease
    [new] = await rb.store.run(tr.claim("worker-b", ["mem"], 10, lease_seconds=30))
    assert new.id == d.id and new.lease_epoch == old.lease_epoch + 1
    attempt = tr.AttemptRecord(
        d.id,
        1,
        "worker-a",
        time.time(),
        "surfaced",
        d.correlation_id,
        part_index=0,
        guid=d.parts[0].guid,
    )
    moved = await rb.store.run(tr.record_sent(old_lease, 0, "surfaced", "m", attempt))
    assert moved is False
    released = await rb.store.run(
        tr.release(old_lease, delay_seconds=0, refund_attempt=True, error="x", clear_in_flight=True)
    )
    finished = await rb.store.run(tr.finish(old_lease, Status.FAILED, "x"))
    marked = await rb.store.run(tr.mark_send_started(old_lease, 0))
    assert (released, finished, marked) == (False, False, False)
    after = await rb.delivery(d.id)
    assert after.start_index == 0 and after.status is Status.SENDING
    assert after.lease_owner == "worker-b" and after.in_flight_index is None
    # the send did happen, so it is on record, marked as not having moved the cursor
    [row] = await rb.attempts(d.id)
    assert row.worker_id == "worker-a" and "lease lost" in (row.error or "")
    new_lease = tr.Lease(new.id, new.lease_epoch)
    assert await rb.store.run(tr.record_sent(new_lease, 0, "surfaced", "m", attempt)) is True
    assert (await rb.delivery(d.id)).start_index == 1


async def test_two_workers_never_claim_the_same_thread_twice(rb: relaybox.Relaybox):
    for n in range(3):
        await enqueue(rb, "same-thread", parts=1, reply_key=f"k{n}")
    await enqueue(rb, "other-thread", parts=1)
    first = await rb.store.run(tr.claim("a", ["mem"], 10, 30))
    second = await rb.store.run(tr.claim("b", ["mem"], 10, 30))
    assert sorted(d.thread_id for d in first) == ["other-thread", "same-thread"]
    assert second == []


async def test_lapsed_lease_is_resumed_from_the_cursor_with_the_same_guid(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=4)
    [held] = await rb.store.run(tr.claim("dead-worker", ["mem"], 10, lease_seconds=0.2))
    lease = tr.Lease(held.id, held.lease_epoch)
    for i in range(2):  # parts 1 and 2 acknowledged, then the worker "dies" sending part 3
        attempt = tr.AttemptRecord(
            d.id,
            1,
            "dead-worker",
            time.time(),
            "surfaced",
            d.correlation_id,
            part_index=i,
            guid=d.parts[i].guid,
        )
        assert await rb.store.run(tr.record_sent(lease, i, "surfaced", None, attempt))
    transport = MemoryTransport()
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [p.index for p in transport.wire] == [2, 3]
    assert [p.guid for p in transport.wire] == [d.parts[2].guid, d.parts[3].guid]


# -- retries -------------------------------------------------------------------------------


async def test_transient_errors_retry_with_backoff_then_succeed(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=2)
    calls = {"n": 0}

    def flaky(part: OutgoingPart):
        calls["n"] += 1
        return TransientError("HTTP 502") if calls["n"] <= 2 else None

    transport = MemoryTransport(script=flaky)
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    stored = await rb.delivery(d.id)
    assert stored.attempts == 3 and transport.texts() == ["chat-1 part 1", "chat-1 part 2"]
    outcomes = [(a.attempt, a.outcome) for a in await rb.attempts(d.id)]
    assert outcomes == [(1, "transient"), (2, "transient"), (3, "surfaced"), (3, "surfaced")]


async def test_backoff_delay_is_persisted_as_available_at(store_url: str):
    rb = relaybox.open(
        store_url, config=fast_config(backoff_base_seconds=30.0, backoff_max_seconds=60.0)
    )
    try:
        d = await enqueue(rb, parts=1)
        transport = MemoryTransport(script=lambda p: TransientError("down"))
        before = time.time()
        await run_worker_until(rb, transport, lambda: len(transport.wire) == 1)
        stored = await rb.delivery(d.id)
        assert stored.status is Status.QUEUED and stored.attempts == 1
        assert stored.available_at >= before + 30.0  # jitter 0: exactly base * 2**0
        assert stored.last_error == "down"
    finally:
        rb.close()


async def test_exhausted_attempts_fail_with_the_error_kept(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=1)
    transport = MemoryTransport(script=lambda p: TransientError("HTTP 500 from upstream"))
    await run_worker_until(rb, transport, status_is(rb, d.id, "failed"))
    stored = await rb.delivery(d.id)
    assert stored.attempts == 4 and len(transport.wire) == 4
    assert stored.last_error == "gave up after 4 attempts: HTTP 500 from upstream"


async def test_permanent_error_fails_at_once(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=2)
    transport = MemoryTransport(script=lambda p: PermanentError("HTTP 400: unknown recipient"))
    await run_worker_until(rb, transport, status_is(rb, d.id, "failed"))
    stored = await rb.delivery(d.id)
    assert len(transport.wire) == 1 and stored.attempts == 1
    assert stored.last_error == "permanent error: HTTP 400: unknown recipient"


async def test_not_surfaced_is_retried_not_counted_as_delivered(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=1)
    answers = iter([SendResult(Outcome.NOT_SURFACED), None])
    transport = MemoryTransport(script=lambda p: next(answers))
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [a.outcome for a in await rb.attempts(d.id)] == ["not_surfaced", "surfaced"]
    assert len(transport.seen) == 1


@pytest.mark.parametrize("kind", [RateLimited, Unavailable])
async def test_retry_after_is_honoured_without_burning_attempts(
    store_url: str, kind: type[RateLimited]
):
    rb = relaybox.open(store_url, config=fast_config(max_attempts=1))
    try:
        d = await enqueue(rb, parts=1)
        answers = iter([kind("slow down", retry_after=0.4), kind("slow down", retry_after=0.4)])
        transport = MemoryTransport(script=lambda p: next(answers, None))
        started = time.monotonic()
        await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
        # two waits of 0.4 s, and max_attempts=1 was never exhausted by them
        assert time.monotonic() - started >= 0.8
        stored = await rb.delivery(d.id)
        assert stored.status is Status.DELIVERED and stored.attempts == 1
        outcome = "unavailable" if kind is Unavailable else "rate_limited"
        assert [a.outcome for a in await rb.attempts(d.id)] == [outcome, outcome, "surfaced"]
    finally:
        rb.close()


# -- max age -------------------------------------------------------------------------------


async def test_stale_replies_expire_instead_of_going_out_late(store_url: str):
    rb = relaybox.open(store_url, config=fast_config(max_age_seconds=0.2))
    try:
        d = await enqueue(rb, parts=2)
        await asyncio.sleep(0.3)
        transport = MemoryTransport()
        await run_worker_until(rb, transport, status_is(rb, d.id, "expired"))
        assert transport.wire == []
        stored = await rb.delivery(d.id)
        assert "expired" in (stored.last_error or "") and stored.finished_at is not None
    finally:
        rb.close()


async def test_reply_that_goes_stale_mid_way_sends_no_more_parts(store_url: str):
    rb = relaybox.open(store_url, config=fast_config(max_age_seconds=0.3))
    try:
        d = await enqueue(rb, parts=3)
        transport = MemoryTransport(delay_seconds=0.2)
        await run_worker_until(rb, transport, status_is(rb, d.id, "expired"))
        stored = await rb.delivery(d.id)
        assert 1 <= stored.start_index < 3
        assert len(transport.seen) == stored.start_index
        assert (await rb.attempts(d.id))[-1].outcome == "expired"
    finally:
        rb.close()


# -- ambiguous sends -----------------------------------------------------------------------


async def test_ambiguous_send_on_deduplicating_transport_is_resent_with_same_guid(
    rb: relaybox.Relaybox,
):
    d = await enqueue(rb, parts=2)
    answers = iter([None, AmbiguousSend("read timeout")])  # part 1 ok; part 2 times out once

    def script(part: OutgoingPart):
        verdict = next(answers, None)
        if isinstance(verdict, AmbiguousSend):
            transport._surface(part)  # it did arrive; only the answer was lost
        return verdict

    transport = MemoryTransport(script=script)
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [p.index for p in transport.wire] == [0, 1, 1]
    assert transport.wire[1].guid == transport.wire[2].guid == d.parts[1].guid
    assert [p.index for p in transport.seen] == [0, 1]  # the resend was deduplicated


class NonDedup(MemoryTransport):
    """A far side that does not deduplicate, with a scripted reconcile answer."""

    def __init__(self, reconcile_answer: object, **kw: object) -> None:
        super().__init__(dedup=False, **kw)  # type: ignore[arg-type]
        self.reconcile_answer = reconcile_answer
        self.reconciled: list[int] = []

    async def reconcile(self, part: OutgoingPart):
        self.reconciled.append(part.index)
        return self.reconcile_answer


async def test_ambiguous_send_without_dedup_is_parked_when_reconcile_cannot_tell(
    rb: relaybox.Relaybox,
):
    d = await enqueue(rb, parts=3)
    answers = iter([None, AmbiguousSend("read timeout")])
    transport = NonDedup(None, script=lambda p: next(answers, None))
    await run_worker_until(rb, transport, status_is(rb, d.id, "unknown"))
    stored = await rb.delivery(d.id)
    assert stored.start_index == 1 and stored.in_flight_index == 1
    assert "parked for an operator" in (stored.last_error or "")
    assert transport.reconciled == [1] and len(transport.wire) == 2  # never blindly resent
    # the operator says it did arrive: delivery continues after it
    await rb.store.run(tr.requeue(d.id, skip_parts=1, reason="operator: arrived"))
    resumed = NonDedup(None)
    await run_worker_until(rb, resumed, status_is(rb, d.id, "delivered"))
    assert [p.index for p in resumed.wire] == [2]


async def test_ambiguous_send_without_dedup_trusts_reconcile(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=2)
    answers = iter([AmbiguousSend("read timeout")])
    transport = NonDedup(
        SendResult(Outcome.SURFACED, "far-9"), script=lambda p: next(answers, None)
    )
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [p.index for p in transport.wire] == [0, 1]  # part 1 was not resent
    stored = await rb.delivery(d.id)
    assert stored.parts[0].transport_message_id == "far-9"
    assert (await rb.attempts(d.id))[0].outcome == "reconciled_surfaced"


async def test_ambiguous_send_confirmed_missing_is_retried(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=1)
    answers = iter([AmbiguousSend("read timeout")])
    transport = NonDedup(NOT_SENT, script=lambda p: next(answers, None))
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [p.index for p in transport.wire] == [0, 0]
    assert (await rb.delivery(d.id)).attempts == 2


async def test_send_left_open_by_a_dead_worker_is_reconciled_not_resent(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=2)
    [held] = await rb.store.run(tr.claim("dead", ["mem"], 10, lease_seconds=0.1))
    assert await rb.store.run(tr.mark_send_started(tr.Lease(held.id, held.lease_epoch), 0))
    await asyncio.sleep(0.15)  # the worker died mid-send; its lease lapses
    transport = NonDedup(None)
    await run_worker_until(rb, transport, status_is(rb, d.id, "unknown"))
    assert transport.wire == [] and transport.reconciled == [0]


async def test_send_left_open_is_resent_when_reconcile_says_it_never_arrived(
    rb: relaybox.Relaybox,
):
    d = await enqueue(rb, parts=2)
    [held] = await rb.store.run(tr.claim("dead", ["mem"], 10, lease_seconds=0.1))
    assert await rb.store.run(tr.mark_send_started(tr.Lease(held.id, held.lease_epoch), 0))
    await asyncio.sleep(0.15)
    transport = NonDedup(NOT_SENT)
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert [p.index for p in transport.wire] == [0, 1]


async def test_hanging_transport_times_out_as_ambiguous(store_url: str):
    rb = relaybox.open(store_url, config=fast_config(send_timeout_seconds=0.2))
    try:
        d = await enqueue(rb, parts=1)
        hangs = iter([True])

        class Hanging(MemoryTransport):
            async def send(self, part: OutgoingPart) -> SendResult:
                if next(hangs, False):
                    await asyncio.sleep(60)
                return await super().send(part)

        transport = Hanging()
        await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
        assert [a.outcome for a in await rb.attempts(d.id)] == ["ambiguous", "surfaced"]
    finally:
        rb.close()


async def test_transport_returning_garbage_is_a_transient_error(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=1)
    answers = iter([ValueError("garbage body"), None])
    transport = MemoryTransport(script=lambda p: next(answers))
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    first = (await rb.attempts(d.id))[0]
    assert first.outcome == "transient" and "ValueError: garbage body" in (first.error or "")


# -- cancel, supersede, shutdown -----------------------------------------------------------


async def test_cancel_queued_and_refuse_to_cancel_delivered(rb: relaybox.Relaybox):
    d = await enqueue(rb, "t1", parts=1)
    cancelled = await rb.cancel(d.id, "user changed their mind")
    assert cancelled.status is Status.CANCELLED
    assert cancelled.last_error == "user changed their mind"
    other = await enqueue(rb, "t2", parts=1)
    transport = MemoryTransport()
    await run_worker_until(rb, transport, status_is(rb, other.id, "delivered"))
    assert transport.texts() == ["t2 part 1"]
    with pytest.raises(relaybox.InvalidState, match="already delivered"):
        await rb.cancel(other.id)
    with pytest.raises(relaybox.NotFound):
        await rb.cancel(99999)


async def test_supersede_cancels_queued_unstarted_replies_in_the_thread(rb: relaybox.Relaybox):
    old = await enqueue(rb, "t", parts=2, reply_key="old")
    elsewhere = await enqueue(rb, "other", parts=1)
    new = await rb.enqueue(
        channel="mem", thread_id="t", recipient="alice", parts=["fresh"], supersede=True
    )
    assert new.superseded == (old.id,)
    stale = await rb.delivery(old.id)
    assert stale.status is Status.CANCELLED
    assert stale.last_error == f"superseded by delivery {new.delivery.id}"
    assert (await rb.delivery(elsewhere.id)).status is Status.QUEUED


async def test_graceful_stop_releases_without_burning_an_attempt(rb: relaybox.Relaybox):
    d = await enqueue(rb, parts=4)
    transport = MemoryTransport(delay_seconds=0.15)
    await run_worker_until(rb, transport, lambda: len(transport.seen) >= 1)
    stored = await rb.delivery(d.id)
    assert stored.status is Status.QUEUED and stored.lease_owner is None
    assert 1 <= stored.start_index < 4 and stored.attempts == 0
    rest = MemoryTransport()
    await run_worker_until(rb, rest, status_is(rb, d.id, "delivered"))
    assert len(transport.seen) + len(rest.seen) == 4
    assert [p.index for p in transport.seen + rest.seen] == [0, 1, 2, 3]
