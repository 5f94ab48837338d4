"""Read units for operators: list steps, show one with its journal, events of a correlation."""

from __future__ import annotations

import time

from relaybox.errors import NotFound
from relaybox.steps.records import StepEvent, StepRecord, StepStatus
from relaybox.store import Tx
from relaybox.store.base import Unit


def list_steps(
    *,
    status: StepStatus | None = None,
    resource_id: str | None = None,
    correlation_id: str | None = None,
    needs_reconciliation: bool = False,
    limit: int = 100,
) -> Unit[list[StepRecord]]:
    """Steps, newest first. ``needs_reconciliation`` also finds unsafe runs whose lease lapsed."""

    def unit(tx: Tx) -> list[StepRecord]:
        rows = tx.fetch_all(
            "list_steps",
            {
                "status": None if status is None else str(status),
                "resource_id": resource_id,
                "correlation_id": correlation_id,
                "stalled": 1 if needs_reconciliation else 0,
                "now": time.time(),
                "limit": limit,
            },
        )
        return [StepRecord.from_row(row) for row in rows]

    return unit


def get_step(step_pk: int) -> Unit[StepRecord]:
    def unit(tx: Tx) -> StepRecord:
        row = tx.fetch_one("step_by_pk", {"id": step_pk})
        if row is None:
            raise NotFound(f"step {step_pk} does not exist")
        return StepRecord.from_row(row)

    return unit


def find_step(resource_id: str, step_id: str) -> Unit[StepRecord]:
    def unit(tx: Tx) -> StepRecord:
        row = tx.fetch_one("step_by_key", {"resource_id": resource_id, "step_id": step_id})
        if row is None:
            raise NotFound(f"no step {step_id!r} for resource {resource_id!r}")
        return StepRecord.from_row(row)

    return unit


def events_of_step(step_pk: int) -> Unit[list[StepEvent]]:
    def unit(tx: Tx) -> list[StepEvent]:
        return [StepEvent.from_row(r) for r in tx.fetch_all("events_of_step", {"step_pk": step_pk})]

    return unit


def step_events_for_correlation(correlation_id: str) -> Unit[list[StepEvent]]:
    """Every step event that carries ``correlation_id``, in journal order (for ``trace``)."""

    def unit(tx: Tx) -> list[StepEvent]:
        rows = tx.fetch_all("step_events_by_correlation", {"correlation_id": correlation_id})
        return [StepEvent.from_row(row) for row in rows]

    return unit


def count_expired(now: float | None = None) -> Unit[int]:
    def unit(tx: Tx) -> int:
        row = tx.fetch_one("count_expired_steps", {"now": time.time() if now is None else now})
        return int(row["n"]) if row else 0

    return unit
