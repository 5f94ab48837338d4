"""The steps' source for ``relaybox trace``: every step event of one correlation id."""

from __future__ import annotations

from relaybox.store import Tx
from relaybox.timeline import RANK_STEPS, TimelineSource, TraceEvent


def step_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    """Step starts, replays, outcomes, timeouts and failures, as trace events."""
    events: list[TraceEvent] = []
    for row in tx.fetch_all("step_events_by_correlation", {"correlation_id": correlation_id}):
        attempt = f", attempt {row['attempt']}" if row["attempt"] is not None else ""
        detail = f": {_short(row['detail'])}" if row["detail"] else ""
        events.append(
            TraceEvent(
                float(row["at"]),
                f"step.{row['event']}",
                f"step {row['step_id']} ({row['tool']}) for {row['resource_id']}"
                f" {row['event']}{attempt}{detail} [{row['worker']}]",
                int(row["id"]),
                {"step_pk": int(row["step_pk"])},
            )
        )
    return events


def _short(text: object, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


SOURCE = TimelineSource("steps", RANK_STEPS, step_trace_events)
