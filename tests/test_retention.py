"""Retention (spec C8), on SQLite and PostgreSQL: old history goes in small batches; queued,
sending and parked deliveries (and what hangs off them) never do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until
from relaybox import retention
from relaybox.audit import FailureAuditor, FailureFilter, FailureReport
from relaybox.config import RetentionConfig, parse_config
from relaybox.outbox.transitions import AttemptRecord
from relaybox.store import Tx
from relaybox.transports.memory import MemoryTransport
from relaybox.worker.pruner import prune_once

DAY = 86_400.0
OLD = time.time() - 40 * DAY


@pytest.fixture
def rb(store_url: str) -> Iterator[relaybox.Relaybox]:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


async def delivery(rb: relaybox.Relaybox, status: str, when: float, thread: str) -> int:
    """A delivery in ``status`` whose every timestamp (and its one attempt) is ``when``."""
    d = (await rb.enqueue(channel="mem", thread_id=thread, recipient="r", parts=["p"])).delivery
    finished = "NULL" if status in ("queued", "sending") else repr(when)

    def age(tx: Tx) -> None:
        tx.execute_script(
            f"UPDATE deliveries SET status = '{status}', created_at = {when!r},"
            f" updated_at = {when!r}, finished_at = {finished} WHERE id = {d.id}"
        )
        record = AttemptRecord(d.id, 1, "w", when, "transient", d.correlation_id, 0, error="x")
        tx.execute("insert_attempt", record.params())

    await rb.store.run(age)
    return d.id


async def failures(rb: relaybox.Relaybox, n: int, when: float) -> None:
    auditor = FailureAuditor(rb.store)
    for i in range(n):
        assert await auditor.record(FailureReport(queue="agent", error=f"e{i}", at=when))


async def delivery_ids(rb: relaybox.Relaybox) -> set[int]:
    return {d.id for d in await rb.deliveries(limit=1000)}


async def attempt_count(rb: relaybox.Relaybox, delivery_id: int) -> int:
    return len(await rb.attempts(delivery_id))


async def failure_count(rb: relaybox.Relaybox) -> int:
    return len(await rb.failures(FailureFilter(), limit=1000))


@pytest.fixture
async def seeded(rb: relaybox.Relaybox) -> dict[str, list[int]]:
    now = time.time()
    seed: dict[str, list[int]] = {"old_finished": [], "kept": [], "recent": []}
    for n in range(7):
        seed["old_finished"].append(await delivery(rb, "delivered", OLD, f"t-old-{n}"))
    seed["old_finished"].append(await delivery(rb, "failed", OLD, "t-old-failed"))
    for status in ("queued", "sending", "unknown"):
        seed["kept"].append(await delivery(rb, status, OLD, f"t-keep-{status}"))
    for n in range(2):
        seed["recent"].append(await delivery(rb, "delivered", now, f"t-new-{n}"))
    await failures(rb, 10, OLD)
    await failures(rb, 3, now)
    return seed


async def test_prune_deletes_old_history_in_batches_and_keeps_active_deliveries(
    rb: relaybox.Relaybox, seeded: dict[str, list[int]]
):
    config = RetentionConfig(batch_size=3)
    plans = retention.plan(config)
    names = ["failures", "inbound", "unanswered_inbound", "attempts", "deliveries"]
    assert [p.target.name for p in plans] == names
    counted = {p.target.name: await rb.store.read(retention.count(p)) for p in plans}
    assert counted == {
        "failures": 10,
        "attempts": 8,
        "deliveries": 8,
        "inbound": 0,
        "unanswered_inbound": 0,
    }
    batches: dict[str, list[int]] = {}
    for p in plans:
        sizes = batches.setdefault(p.target.name, [])
        result = await asyncio.to_thread(retention.prune_sync, rb.store, p, 3, sizes.append)
        assert result.deleted == sum(sizes) and result.batches == len(sizes)
    assert batches["failures"] == [3, 3, 3, 1]
    assert batches["attempts"] == [3, 3, 2]
    assert batches["deliveries"] == [3, 3, 2]
    assert batches["inbound"] == [0] and batches["unanswered_inbound"] == [0]
    assert await delivery_ids(rb) == set(seeded["kept"]) | set(seeded["recent"])
    for kept in seeded["kept"]:  # old, but queued, sending or parked: kept with its attempts
        assert await attempt_count(rb, kept) == 1
    assert await failure_count(rb) == 3


async def test_prune_removes_finished_deliveries_with_parts_and_attempts(
    rb: relaybox.Relaybox, seeded: dict[str, list[int]]
):
    [plan] = retention.plan(RetentionConfig(), tables=["deliveries"])
    sizes: list[int] = []
    result = await asyncio.to_thread(retention.prune_sync, rb.store, plan, 3, sizes.append)
    assert sizes == [3, 3, 2] and result.deleted == 8
    remaining = await delivery_ids(rb)
    assert remaining == set(seeded["kept"]) | set(seeded["recent"])
    for kept in seeded["kept"]:  # queued, sending, unknown: untouched, with their history
        assert await attempt_count(rb, kept) == 1
        assert len((await rb.delivery(kept)).parts) == 1
    for gone in seeded["old_finished"]:
        assert await attempt_count(rb, gone) == 0  # cascaded with the delivery


async def test_zero_keeps_a_table_forever_and_override_applies_to_all(
    rb: relaybox.Relaybox, seeded: dict[str, list[int]]
):
    keep_failures = RetentionConfig(failures_days=0)
    assert "failures" not in [p.target.name for p in retention.plan(keep_failures)]
    recent_too = retention.plan(keep_failures, older_than_days=0, now=time.time() + 1)
    counted = {p.target.name: await rb.store.read(retention.count(p)) for p in recent_too}
    assert counted["failures"] == 13 and counted["deliveries"] == 10  # never the active three
    with pytest.raises(ValueError, match="unknown table 'steps'"):
        retention.plan(keep_failures, tables=["steps"])


async def test_inbound_is_pruned_only_when_its_replies_are_finished(rb: relaybox.Relaybox):
    answered = await rb.record_inbound(
        channel="mem", external_id="a", thread_id="t-a", resource_id="r"
    )
    waiting = await rb.record_inbound(
        channel="mem", external_id="b", thread_id="t-b", resource_id="r"
    )
    done = await rb.reply(answered.inbound.id, ["ok"])
    await rb.reply(waiting.inbound.id, ["still queued"])

    def age(tx: Tx) -> None:
        tx.execute_script(f"UPDATE inbound_messages SET received_at = {OLD!r}")
        tx.execute_script(
            f"UPDATE deliveries SET status = 'delivered', finished_at = {OLD!r}"
            f" WHERE id = {done.delivery.id}"
        )

    await rb.store.run(age)
    [plan] = retention.plan(RetentionConfig(), tables=["inbound"])
    assert await rb.store.read(retention.count(plan)) == 1
    await asyncio.to_thread(retention.prune_sync, rb.store, plan, 10)
    assert [m.external_id for m in await rb.gaps(0)] == ["b"]


async def test_dry_run_counts_match_what_prune_deletes(
    rb: relaybox.Relaybox, seeded: dict[str, list[int]]
):
    plans = retention.plan(RetentionConfig())
    before = {p.target.name: await rb.store.read(retention.count(p)) for p in plans}
    assert await failure_count(rb) == 13  # counting deleted nothing
    deleted = {}
    for p in plans:
        result = await asyncio.to_thread(retention.prune_sync, rb.store, p, 500)
        deleted[p.target.name] = result.deleted
    assert deleted == before


async def test_worker_prunes_on_start(store_url: str):
    config = parse_config(
        {
            "worker": {"lease_seconds": 1.0, "poll_interval_seconds": 0.01},
            "channels": {"mem": {"transport": "memory"}},
            "retention": {"failures_days": 30, "batch_size": 2, "interval_seconds": 3600},
        }
    )
    rb = relaybox.open(store_url, config=config)
    try:
        await failures(rb, 5, OLD)
        await failures(rb, 1, time.time())

        async def pruned() -> bool:
            return await failure_count(rb) == 1

        await run_worker_until(rb, MemoryTransport(), pruned)
    finally:
        rb.close()


async def test_prune_once_reports_and_survives_a_closed_store(store_url: str):
    rb = relaybox.open(store_url, config=fast_config())
    await failures(rb, 4, OLD)
    stop = asyncio.Event()
    assert await prune_once(rb.store, RetentionConfig(batch_size=3), stop) == 4
    rb.close()
    assert await prune_once(rb.store, RetentionConfig(), stop) == 0  # logged, not raised


async def test_unanswered_inbound_is_kept_until_answered_marked_or_its_own_retention(
    rb: relaybox.Relaybox,
):
    """An unanswered message is a gap; pruning it would hide the silent loss `gaps` reports."""
    ids = {}
    for name in ("silent", "failed-reply", "marked", "answered"):
        recorded = await rb.record_inbound(
            channel="mem", external_id=name, thread_id=f"t-{name}", resource_id="r"
        )
        ids[name] = recorded.inbound.id
    failed = await rb.reply(ids["failed-reply"], ["never arrived"])
    answered = await rb.reply(ids["answered"], ["ok"])
    await rb.mark_no_reply_needed(ids["marked"], "just a thumbs-up")

    def age(tx: Tx) -> None:
        tx.execute_script(f"UPDATE inbound_messages SET received_at = {OLD!r}")
        for delivery_id, status in (
            (failed.delivery.id, "failed"),
            (answered.delivery.id, "delivered"),
        ):
            tx.execute_script(
                f"UPDATE deliveries SET status = '{status}', finished_at = {OLD!r}"
                f" WHERE id = {delivery_id}"
            )

    await rb.store.run(age)
    gaps_before = sorted(m.external_id for m in await rb.gaps(0))
    assert gaps_before == ["failed-reply", "silent"]
    # The routine prune (and --older-than) keeps the gaps; the answered and marked go.
    for p in retention.plan(RetentionConfig(), older_than_days=1):
        await asyncio.to_thread(retention.prune_sync, rb.store, p, 10)
    assert sorted(m.external_id for m in await rb.gaps(0)) == gaps_before
    remaining = await rb.store.read(lambda tx: tx.fetch_all("inbound_gaps", _gap_params()))
    assert len(remaining) == 2
    # Past their own retention (90 days by default; here 30), gaps go too.
    [plan] = retention.plan(
        RetentionConfig(unanswered_inbound_days=30), tables=["unanswered_inbound"]
    )
    assert await rb.store.read(retention.count(plan)) == 2
    await asyncio.to_thread(retention.prune_sync, rb.store, plan, 10)
    assert await rb.gaps(0) == []


def _gap_params() -> dict[str, object]:
    return {"before": time.time(), "since": None, "limit": 100}
