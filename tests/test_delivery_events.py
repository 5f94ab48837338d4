"""Operator actions and give-ups are events, written in the same unit as the change they explain.

Covers: retry/resolve/cancel recorded with who, when, what and how many; run numbers keep
counting after a retry; the worker's give-up, its event and its audit row commit together (a
SIGKILL inside the unit leaves none of them, after the commit all of them); a worker whose
lease was taken over records ``lease_lost``, never a give-up that did not happen.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until, status_is
from relaybox.models import Status
from relaybox.outbox import inspect
from relaybox.outbox import transitions as tr
from relaybox.outbox.events import Actor, operator
from relaybox.store import Tx
from relaybox.transports.base import PermanentError, TransientError
from relaybox.transports.memory import MemoryTransport


@pytest.fixture
def rb(store_url: str):  # type: ignore[no-untyped-def]
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


async def _failed_delivery(rb: relaybox.Relaybox) -> relaybox.Delivery:
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["a", "b"])).delivery
    always = MemoryTransport(script=lambda p: TransientError("502 from the far side"))
    await run_worker_until(rb, always, status_is(rb, d.id, "failed"))
    return await rb.delivery(d.id)


def _failures(rb: relaybox.Relaybox, delivery_id: int) -> list[dict[str, object]]:
    return rb.store.read_sync(
        lambda tx: [
            r
            for r in tx.fetch_all("trace_failures", {"correlation_id": _cid(tx, delivery_id)})
            if r["job_id"] == str(delivery_id)
        ]
    )


def _cid(tx: Tx, delivery_id: int) -> str:
    row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
    assert row is not None
    return str(row["correlation_id"])


async def test_give_up_retry_and_runs_that_keep_counting(rb: relaybox.Relaybox) -> None:
    failed = await _failed_delivery(rb)
    events = await rb.store.read(inspect.events_of(failed.id))
    assert [e.kind for e in events] == ["gave_up"]
    gave_up = events[0]
    assert gave_up.actor.startswith("vm:") or ":" in gave_up.actor  # the worker id
    assert (gave_up.from_status, gave_up.to_status, gave_up.run) == ("sending", "failed", 4)
    assert "gave up after 4 attempts" in (gave_up.detail or "")
    # The terminal audit row was written with it.
    terminal = [f for f in _failures(rb, failed.id) if f["terminal"]]
    assert len(terminal) == 1 and "gave up after 4 attempts" in str(terminal[0]["message"])

    retried = await rb.store.run(tr.retry(failed.id, by=operator("alice"), note="far side fixed"))
    assert retried.status is Status.QUEUED and retried.attempts == 0 and retried.run == 4
    good = MemoryTransport()
    await run_worker_until(rb, good, status_is(rb, failed.id, "delivered"))
    runs = [a.attempt for a in await rb.store.read(inspect.attempts_of(failed.id))]
    assert runs == [1, 2, 3, 4, 5, 5]  # run 5 sends both parts; no second "run 1..4"
    events = await rb.store.read(inspect.events_of(failed.id))
    assert [(e.kind, e.actor, e.run) for e in events] == [
        ("gave_up", gave_up.actor, 4),
        ("retried", "operator:alice", 4),
    ]
    assert events[1].detail == "retried by operator:alice: far side fixed"
    assert (events[1].from_status, events[1].to_status) == ("failed", "queued")
    assert events[1].action_count == 1 and events[1].action_id is None

    timeline = (await rb.trace(f"delivery:{failed.id}")).events
    kinds = [e.kind for e in timeline if e.kind.startswith(("attempt.", "delivery.event."))]
    # Between the two rounds of attempts the trace says who did what.
    assert kinds == [
        *["attempt.transient"] * 4,
        "delivery.event.gave_up",
        "delivery.event.retried",
        *["attempt.surfaced"] * 2,
    ]
    (summary,) = [e.summary for e in timeline if e.kind == "delivery.event.retried"]
    assert "retried by operator:alice" in summary and "after run 4" in summary


async def test_cancel_and_bulk_actions_say_how_many(rb: relaybox.Relaybox) -> None:
    ids = [
        (await rb.enqueue(channel="mem", thread_id=f"t{n}", recipient="r", parts=["x"])).delivery.id
        for n in range(3)
    ]
    actor = Actor.bulk("console:bob", count=len(ids))
    for delivery_id in ids:
        await rb.store.run(tr.cancel(delivery_id, "spam wave", by=actor))
    for delivery_id in ids:
        (event,) = await rb.store.read(inspect.events_of(delivery_id))
        assert (event.kind, event.actor, event.action_count) == ("cancelled", "console:bob", 3)
        assert event.action_id == actor.action_id and event.detail == "spam wave"
        assert (event.from_status, event.to_status) == ("queued", "cancelled")
    summary = [e for e in (await rb.trace(f"delivery:{ids[0]}")).events if "event" in e.kind]
    assert "one of 3 in action" in summary[0].summary


async def test_resolve_is_an_event_and_refuses_other_statuses(rb: relaybox.Relaybox) -> None:
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["a", "b"])).delivery
    (held,) = await rb.store.run(tr.claim("w-1", ["mem"], 1, 30.0))
    lease = tr.Lease(held.id, held.lease_epoch)
    assert await rb.store.run(tr.finish(lease, Status.UNKNOWN, "ambiguous", by="w-1"))
    await rb.store.run(tr.resolve(d.id, arrived=True, by=operator("carol")))
    with pytest.raises(relaybox.errors.InvalidState, match="not unknown"):  # queued now
        await rb.store.run(tr.resolve(d.id, arrived=True, by=operator("carol")))
    events = await rb.store.read(inspect.events_of(d.id))
    assert [(e.kind, e.actor) for e in events] == [
        ("parked", "w-1"),
        ("resolved", "operator:carol"),
    ]
    assert (await rb.delivery(d.id)).start_index == 1  # the ambiguous part counted as arrived


async def test_lease_taken_over_is_recorded_as_lease_lost_not_a_give_up(
    rb: relaybox.Relaybox,
) -> None:
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["a"])).delivery
    (first,) = await rb.store.run(tr.claim("w-old", ["mem"], 1, 0.0))  # lapses at once
    (second,) = await rb.store.run(tr.claim("w-new", ["mem"], 1, 30.0))
    assert second.lease_epoch == first.lease_epoch + 1
    report = relaybox.FailureReport(
        queue="deliveries",
        job_id=str(d.id),
        correlation_id=d.correlation_id,
        error=PermanentError("410 gone"),
        terminal=True,
    )
    row = rb._auditor.row(report)
    old = tr.Lease(first.id, first.lease_epoch)
    applied = await rb.store.run(
        tr.finish(old, Status.FAILED, "permanent error: 410 gone", failure=row, by="w-old")
    )
    assert applied is False
    now = await rb.delivery(d.id)
    assert now.status is Status.SENDING and now.lease_owner == "w-new"
    events = await rb.store.read(inspect.events_of(d.id))
    assert [(e.kind, e.actor, e.to_status) for e in events] == [("lease_lost", "w-old", "sending")]
    assert "would have been failed" in (events[0].detail or "")
    (failure,) = _failures(rb, d.id)
    assert failure["error_type"] == "LeaseLost" and not failure["terminal"]
    assert "not applied" in str(failure["message"])


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import relaybox
    from relaybox.models import Status
    from relaybox.outbox import transitions as tr
    sys.path.insert(0, "tests")
    from _outbox_helpers import fast_config

    url, when = sys.argv[1], sys.argv[2]
    rb = relaybox.open(url, config=fast_config())
    store = rb.store
    (held,) = store.run_sync(tr.claim("w-doomed", ["mem"], 1, 60.0))
    report = relaybox.FailureReport(
        queue="deliveries", job_id=str(held.id), correlation_id=held.correlation_id, error="gave up"
    )
    row = rb._auditor.row(report)
    finish = tr.finish(tr.Lease(held.id, held.lease_epoch), Status.FAILED, "gave up", failure=row)

    def inside(tx):
        result = finish(tx)
        if when == "inside":
            os.kill(os.getpid(), signal.SIGKILL)  # after the writes, before the commit
        return result

    store.run_sync(inside)
    os.kill(os.getpid(), signal.SIGKILL)  # after the commit
    """
)


@pytest.mark.parametrize("when", ["inside", "after"])
def test_sigkill_never_separates_a_give_up_from_its_audit_row_and_event(
    store_url: str, when: str
) -> None:
    rb = relaybox.open(store_url, config=fast_config())
    try:
        d = asyncio.run(
            rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["a"])
        ).delivery
        run = subprocess.run(
            [sys.executable, "-c", _KILL_SCRIPT, store_url, when],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == -9, run.stderr
        status = rb.store.read_sync(inspect.get_delivery(d.id)).status
        events = rb.store.read_sync(inspect.events_of(d.id))
        failures = _failures(rb, d.id)
        if when == "inside":
            assert status is Status.SENDING  # nothing of the unit committed
            assert events == [] and failures == []
        else:
            assert status is Status.FAILED
            assert [e.kind for e in events] == ["gave_up"] and len(failures) == 1
    finally:
        rb.close()
