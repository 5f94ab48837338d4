"""``relaybox health``: named checks, each a number against a threshold from ``[health]``.

Built for a probe or a cron job: the CLI exits 2 when any check fails (1 when it could not
ask). Every number comes from one cheap, indexed query (``store/sql/<dialect>/health.sql``,
``workers.sql``). The checks that need a live view — is any worker delivering this channel,
has it failed N sends in a row, is it paused — read the workers registry, where each worker
publishes its channel state with every heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from relaybox.config import HealthConfig, WorkerConfig
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.tasks.inspect import health_counts as task_health_counts
from relaybox.workers.inspect import WorkerInfo, list_workers, queue_by_channel


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: float
    limit: float
    ok: bool
    help: str
    detail: str | None = None  # which channels, or why a check was not judged

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HealthReport:
    checks: tuple[Check, ...]
    metrics: dict[str, float | int | None]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def with_check(self, check: Check) -> HealthReport:
        return HealthReport((*self.checks, check), self.metrics)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "metrics": self.metrics,
        }


def health(
    config: HealthConfig, now: float | None = None, *, dead_after: float | None = None
) -> Unit[HealthReport]:
    """Unit (read): measure the store and check each number against ``config``.

    ``dead_after``: seconds without a heartbeat after which a worker counts as dead
    (``[worker] dead_after_seconds``).
    """
    dead_after = WorkerConfig().dead_after_seconds if dead_after is None else dead_after

    def unit(tx: Tx) -> HealthReport:
        at = time.time() if now is None else now
        since = at - config.window_seconds
        queue = tx.fetch_one("health_queue") or {}
        depth = int(queue.get("depth") or 0)
        oldest = queue.get("oldest_created_at")
        oldest_age = 0.0 if oldest is None else max(0.0, at - float(oldest))
        finished = {
            r["status"]: int(r["n"]) for r in tx.fetch_all("health_finished", {"since": since})
        }
        failed = finished.get("failed", 0) + finished.get("expired", 0)
        ended = failed + finished.get("delivered", 0)
        rate = failed / ended if ended else 0.0
        judged = ended >= config.min_failure_sample
        unknown = _count(tx, "health_unknown", {})
        failures = _count(tx, "health_failures", {"since": since})
        gaps = _count(tx, "health_gaps", {"since": since, "before": at - config.gap_age_seconds})
        window = _span(config.window_seconds)
        tasks = task_health_counts(at, since)(tx)
        checks: tuple[Check, ...] = (
            _check("queue_depth", depth, config.max_queue_depth, "deliveries queued or sending"),
            _check(
                "oldest_queued_seconds",
                round(oldest_age, 3),
                config.max_oldest_queued_seconds,
                "age of the oldest delivery still queued or sending",
            ),
            Check(
                "failure_rate",
                round(rate, 4),
                config.max_failure_rate,
                not judged or rate <= config.max_failure_rate,
                f"failed or expired / finished (not cancelled) deliveries, last {window}",
                None
                if judged
                else f"not judged: {ended} finished, fewer than min_failure_sample"
                f" ({config.min_failure_sample})",
            ),
            _check("unknown", unknown, config.max_unknown, "deliveries parked for an operator"),
            _check(
                "gaps",
                gaps,
                config.max_gaps,
                f"inbound messages of the last {window} unanswered after"
                f" {_span(config.gap_age_seconds)}",
            ),
        )
        checks += (
            _check(
                "tasks_late",
                tasks.late,
                config.max_late_tasks,
                "open agent tasks past a deadline or nudged",
            ),
            _check(
                "tasks_timed_out",
                tasks.timed_out,
                config.max_timed_out_tasks,
                f"agent tasks that timed out in the last {window}",
            ),
        )
        workers = [w for w in list_workers(dead_after, at)(tx) if w.alive]
        checks += _live_checks(tx, config, workers, at)
        metrics: dict[str, float | int | None] = {
            "queue_depth": depth,
            "oldest_queued_seconds": round(oldest_age, 3),
            "window_seconds": config.window_seconds,
            "delivered": finished.get("delivered", 0),
            "failed": finished.get("failed", 0),
            "expired": finished.get("expired", 0),
            "cancelled": finished.get("cancelled", 0),
            "failure_rate": round(rate, 4),
            "unknown": unknown,
            "job_failures": failures,
            "gaps": gaps,
            "tasks_open": tasks.open,
            "tasks_late": tasks.late,
            "tasks_timed_out": tasks.timed_out,
            "live_workers": len(workers),
        }
        return HealthReport(checks, metrics)

    return unit


def _live_checks(
    tx: Tx, config: HealthConfig, workers: list[WorkerInfo], at: float
) -> tuple[Check, ...]:
    """Checks over live workers: coverage of queued work, failing streaks, long pauses."""
    served = {channel for w in workers for channel in w.channels}
    queued = sorted({q.channel for q in queue_by_channel()(tx) if q.status == "queued"})
    unserved = [c for c in queued if c not in served]
    streak: dict[str, int] = {}
    paused: dict[str, float] = {}
    for w in workers:
        for channel, state in w.channel_state.items():
            if not isinstance(state, dict):
                continue
            failures = state.get("consecutive_failures")
            if isinstance(failures, int):
                streak[channel] = max(streak.get(channel, 0), failures)
            since, until = state.get("paused_since"), state.get("paused_until")
            if isinstance(since, int | float) and isinstance(until, int | float) and until > at:
                paused[channel] = max(paused.get(channel, 0.0), at - since)
    worst_streak = max(streak.values(), default=0)
    worst_pause = max(paused.values(), default=0.0)
    limit = config.max_consecutive_failures
    return (
        Check(
            "unserved_channels",
            len(unserved),
            0,
            not unserved or not config.require_live_worker,
            "channels with queued replies and no live worker delivering them",
            ", ".join(unserved) or None,
        ),
        _check(
            "consecutive_failures",
            worst_streak,
            limit,
            "most sends failed in a row on one channel (as live workers report)",
            ", ".join(f"{c}: {n}" for c, n in sorted(streak.items()) if n > limit) or None,
        ),
        _check(
            "paused_seconds",
            round(worst_pause, 3),
            config.max_paused_seconds,
            "longest current pause of a channel (rate limit, 503 with Retry-After)",
            ", ".join(f"{c}: {s:.0f}s" for c, s in sorted(paused.items())) or None,
        ),
    )


def _check(
    name: str, value: float, limit: float, help_text: str, detail: str | None = None
) -> Check:
    return Check(name, value, limit, value <= limit, help_text, detail)


def _count(tx: Tx, query: str, params: dict[str, Any]) -> int:
    row = tx.fetch_one(query, params)
    return int(row["n"]) if row else 0


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
