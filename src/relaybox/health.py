"""``relaybox health``: a handful of numbers, each checked against a threshold from ``[health]``.

Built for a probe or a cron job: the CLI exits non-zero when any check fails. Every number
comes from one cheap, indexed query (see ``store/sql/<dialect>/health.sql``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from relaybox.config import HealthConfig
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.tasks.inspect import health_counts as task_health_counts


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: float
    limit: float
    ok: bool
    help: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HealthReport:
    checks: tuple[Check, ...]
    metrics: dict[str, float | int | None]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "metrics": self.metrics,
        }


def health(config: HealthConfig, now: float | None = None) -> Unit[HealthReport]:
    """Unit (read): measure the store and check each number against ``config``."""

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
            _check(
                "failure_rate",
                round(rate, 4),
                config.max_failure_rate,
                f"failed or expired / finished (not cancelled) deliveries, last {window}",
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
        }
        return HealthReport(checks, metrics)

    return unit


def _check(name: str, value: float, limit: float, help_text: str) -> Check:
    return Check(name, value, limit, value <= limit, help_text)


def _count(tx: Tx, query: str, params: dict[str, Any]) -> int:
    row = tx.fetch_one(query, params)
    return int(row["n"]) if row else 0


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
