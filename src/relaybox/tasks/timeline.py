"""The tasks' source for ``relaybox trace``: every task event under one correlation id."""

from __future__ import annotations

import json

from relaybox.store import Tx
from relaybox.tasks.models import TaskEvent
from relaybox.timeline import RANK_TASKS, TimelineSource, TraceEvent


def task_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    """Task starts, acks, progress, nudges, deadlines and outcomes, in journal order."""
    events: list[TraceEvent] = []
    rows = tx.fetch_all("task_events_of_correlation", {"correlation_id": correlation_id})
    for order, row in enumerate(rows):
        event = TaskEvent.from_row(row)  # a row that cannot be decoded fails the trace loudly
        detail = _short(json.dumps(event.payload, ensure_ascii=False, sort_keys=True))
        events.append(
            TraceEvent(
                event.at,
                f"task.{event.kind}",
                f"task {event.task_id} ({_short(row['summary'], 60)}) #{event.seq}"
                f" {event.kind} [{event.actor}] {detail}",
                order,
                {"task_id": event.task_id, "seq": event.seq},
            )
        )
    return events


def _short(text: object, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


SOURCE = TimelineSource("tasks", RANK_TASKS, task_trace_events)
