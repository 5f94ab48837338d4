"""``trace``: one deterministic timeline per correlation id, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until, status_is
from relaybox import timeline as timeline_module
from relaybox.audit import FailureAuditor, FailureReport
from relaybox.errors import NotFound
from relaybox.outbox.transitions import AttemptRecord
from relaybox.store import Tx
from relaybox.timeline import RANK_STEPS, TimelineSource, TraceEvent, register_source
from relaybox.trace import AmbiguousReference, merge, sources, trace
from relaybox.transports.base import TransientError
from relaybox.transports.memory import MemoryTransport


@pytest.fixture
def rb(store_url: str) -> Iterator[relaybox.Relaybox]:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


async def test_whole_chain_from_inbound_to_delivered_in_causal_order(rb: relaybox.Relaybox):
    got = await rb.record_inbound(
        channel="mem", external_id="SM9", thread_id="chat-9", resource_id="+1", text="hi"
    )
    await rb.record_inbound(
        channel="mem", external_id="SM9", thread_id="chat-9", resource_id="+1", text="hi"
    )
    d = (await rb.reply(got.inbound.id, ["one", "two"])).delivery
    errors = iter([TransientError("502")])
    transport = MemoryTransport(script=lambda p: next(errors, None))
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))

    by_inbound = await rb.trace(f"inbound:{got.inbound.id}")
    kinds = [e.kind for e in by_inbound.events]
    assert kinds == [
        "inbound.received",
        "inbound.duplicate",
        "inbound.reply_enqueued",
        "delivery.enqueued",
        "attempt.transient",
        "failure",
        "attempt.surfaced",
        "attempt.surfaced",
        "delivery.delivered",
    ]
    assert by_inbound.correlation_id == got.correlation_id
    assert by_inbound.subject == f"inbound {got.inbound.id}"
    for ref in (f"delivery:{d.id}", got.correlation_id):
        other = await rb.trace(ref)
        assert other.events == by_inbound.events
    failure = next(e for e in by_inbound.events if e.kind == "failure")
    assert "TransientError: 502" in failure.summary and "will be retried" in failure.summary
    assert by_inbound.to_json()["events"][0]["n"] == 1


async def test_many_events_in_the_same_millisecond_keep_one_order(rb: relaybox.Relaybox):
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["x"])).delivery
    at = 1_800_000_000.123
    auditor = FailureAuditor(rb.store)
    for n in range(20):
        report = FailureReport(
            queue="agent", error=f"e{n}", correlation_id=d.correlation_id, at=at, job_id=n
        )
        assert await auditor.record(report) is not None

    def attempts(tx: Tx) -> None:
        for n in range(20):
            record = AttemptRecord(
                delivery_id=d.id,
                attempt=n,
                worker_id="w",
                started_at=at,
                outcome="transient",
                correlation_id=d.correlation_id,
                error=f"a{n}",
            )
            tx.execute("insert_attempt", record.params())

    await rb.store.run(attempts)
    first = await rb.trace(d.correlation_id)
    same_ms = [e for e in first.events if e.at == at]
    assert [e.source for e in same_ms] == ["attempts"] * 20 + ["failures"] * 20
    assert [e.seq for e in same_ms[:20]] == sorted(e.seq for e in same_ms[:20])
    assert [e.refs["failure_id"] for e in same_ms[20:]] == sorted(
        e.refs["failure_id"] for e in same_ms[20:]
    )
    assert [e.summary.split(": ")[-1].split(" ")[0] for e in same_ms[20:]] == [
        f"e{n}" for n in range(20)
    ]
    for _ in range(3):
        assert (await rb.trace(d.correlation_id)).events == first.events
    # The merge does not depend on the order events arrive in.
    shuffled = list(first.events)
    random.Random(7).shuffle(shuffled)
    by_source: dict[str, list[TraceEvent]] = {}
    for event in shuffled:
        by_source.setdefault(event.source, []).append(event)
    rebuilt = merge(
        [
            (next(s for s in sources() if s.name == name), events)
            for name, events in by_source.items()
        ]
    )
    assert rebuilt == first.events


@pytest.fixture
def step_source() -> Iterator[TimelineSource]:
    def events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
        row = tx.fetch_one("trace_inbound", {"correlation_id": correlation_id})
        if row is None:
            return []
        return [TraceEvent(float(row["received_at"]), "step.started", "tool step started", 1)]

    source = TimelineSource("steps-test", RANK_STEPS, events)
    register_source(source)
    yield source
    timeline_module._REGISTERED.pop(source.name, None)


async def test_a_registered_source_joins_the_timeline_at_its_rank(
    rb: relaybox.Relaybox, step_source: TimelineSource
):
    got = await rb.record_inbound(channel="mem", external_id="s1", thread_id="t", resource_id="r")
    result = await rb.trace(got.correlation_id)
    assert [(e.kind, e.source) for e in result.events] == [
        ("inbound.received", "inbound"),
        ("step.started", "steps-test"),  # same timestamp: inbound ranks first
    ]


async def test_bad_references_get_clear_errors(rb: relaybox.Relaybox):
    got = await rb.record_inbound(channel="mem", external_id="a", thread_id="t", resource_id="r")
    d = (await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["x"])).delivery
    assert got.inbound.id == d.id == 1
    with pytest.raises(AmbiguousReference, match="say inbound:1 or delivery:1"):
        await rb.trace("1")
    with pytest.raises(NotFound, match="delivery 7 does not exist"):
        await rb.trace("delivery:7")
    with pytest.raises(NotFound, match="nothing to trace for 'nope'"):
        await rb.trace("nope")
    d2 = (await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["y"])).delivery
    only_delivery = await rb.store.read(trace(str(d2.id)))
    assert only_delivery.subject == f"delivery {d2.id}"
