"""Retention (spec C8): delete old history by age, in small batches.

Each table is a :class:`PruneTarget`: its age setting in ``[retention]`` and two named
queries (count what is old enough; delete up to ``batch_size`` of it). Every batch is its own
short transaction, so the store is never locked for long, and a cutoff fixed at the start
means the loop ends even while new rows arrive.

Never pruned: deliveries still queued, sending or parked as ``unknown`` (and their attempts),
inbound messages whose reply is one of those, unanswered inbound messages (gaps) younger than
``unanswered_inbound_days``, and any table whose age is 0 ("keep forever").

Agent turns have no target of their own: a turn and its journal (``turns``, ``turn_events``)
go with their inbound message (``ON DELETE CASCADE``); the history entries a turn wrote stay
(memory is never pruned; turn ids are never reused, so their tag never names a later turn).

To prune a new table, add a field to :class:`relaybox.config.RetentionConfig`, a count and a
delete query to ``store/sql/<dialect>/``, and a :class:`PruneTarget` to :data:`TARGETS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from relaybox.config import RetentionConfig
from relaybox.store import Store, Tx
from relaybox.store.base import Unit

DAY = 86_400.0


@dataclass(frozen=True)
class PruneTarget:
    name: str
    count_query: str
    delete_query: str
    age_days: Callable[[RetentionConfig], float]
    what: str


# The order matters: inbound messages before deliveries, because whether a message was answered
# is read from its delivered reply (pruned with the deliveries); attempts before deliveries (a
# delivery's deletion takes its attempts along anyway). Keep inbound_days <= deliveries_days.
TARGETS: tuple[PruneTarget, ...] = (
    PruneTarget(
        "failures",
        "count_prunable_failures",
        "prune_failures",
        lambda r: r.failures_days,
        "failure audit rows",
    ),
    PruneTarget(
        "inbound",
        "count_prunable_inbound",
        "prune_inbound",
        lambda r: r.inbound_days,
        "answered inbound messages (a reply delivered, or marked 'no reply needed')",
    ),
    PruneTarget(
        "unanswered_inbound",
        "count_prunable_unanswered_inbound",
        "prune_unanswered_inbound",
        lambda r: r.unanswered_inbound_days,
        "unanswered inbound messages (what `relaybox gaps` lists), after their own retention",
    ),
    PruneTarget(
        "attempts",
        "count_prunable_attempts",
        "prune_attempts",
        lambda r: r.attempts_days,
        "attempts of finished deliveries",
    ),
    PruneTarget(
        "deliveries",
        "count_prunable_deliveries",
        "prune_deliveries",
        lambda r: r.deliveries_days,
        "finished deliveries (delivered, failed, expired, cancelled), with parts and attempts",
    ),
)


_KEPT_UNLESS_NAMED = frozenset({"unanswered_inbound"})


@dataclass(frozen=True)
class PrunePlan:
    """One table to prune: everything older than ``cutoff`` (epoch seconds)."""

    target: PruneTarget
    cutoff: float
    age_days: float


@dataclass
class PruneResult:
    table: str
    cutoff: float
    deleted: int = 0
    batches: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan(
    config: RetentionConfig,
    *,
    older_than_days: float | None = None,
    tables: list[str] | None = None,
    now: float | None = None,
) -> list[PrunePlan]:
    """Which tables to prune and from when; ``older_than_days`` overrides every age.

    Except that of unanswered inbound messages, unless that table is named in ``tables``: a
    routine ``prune --older-than 7d`` must not erase the evidence of silent loss.
    """
    known = [t.name for t in TARGETS]
    for name in tables or []:
        if name not in known:
            raise ValueError(f"unknown table {name!r} to prune; one of: {', '.join(known)}")
    at = time.time() if now is None else now
    plans = []
    for target in TARGETS:
        if tables and target.name not in tables:
            continue
        override = older_than_days
        if target.name in _KEPT_UNLESS_NAMED and not (tables and target.name in tables):
            override = None
        days = target.age_days(config) if override is None else override
        if days <= 0 and override is None:
            continue  # 0 = keep forever
        plans.append(PrunePlan(target, at - days * DAY, days))
    return plans


def count(p: PrunePlan) -> Unit[int]:
    """Unit (read): how many rows the plan would delete."""

    def unit(tx: Tx) -> int:
        row = tx.fetch_one(p.target.count_query, {"cutoff": p.cutoff})
        return int(row["n"]) if row else 0

    return unit


def delete_batch(p: PrunePlan, limit: int) -> Unit[int]:
    """Unit: delete up to ``limit`` rows of the plan; returns how many went."""

    def unit(tx: Tx) -> int:
        return max(0, tx.execute(p.target.delete_query, {"cutoff": p.cutoff, "limit": limit}))

    return unit


def prune_sync(
    store: Store,
    p: PrunePlan,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete everything the plan covers, one batch per transaction (CLI)."""
    result = PruneResult(p.target.name, p.cutoff)
    while True:
        deleted = store.run_sync(delete_batch(p, batch_size))
        result.deleted += deleted
        result.batches += 1
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch_size:
            return result


async def prune(
    store: Store,
    p: PrunePlan,
    batch_size: int,
    stop: asyncio.Event | None = None,
    pause_seconds: float = 0.0,
) -> PruneResult:
    """Async variant for the worker: yields between batches and stops when asked."""
    result = PruneResult(p.target.name, p.cutoff)
    while stop is None or not stop.is_set():
        deleted = await store.run(delete_batch(p, batch_size))
        result.deleted += deleted
        result.batches += 1
        if deleted < batch_size:
            break
        await asyncio.sleep(pause_seconds)
    return result
