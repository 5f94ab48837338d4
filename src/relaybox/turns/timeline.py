"""The turns' source for ``relaybox trace``: every turn event of one correlation id."""

from __future__ import annotations

from relaybox.store import Tx
from relaybox.timeline import RANK_TURNS, TimelineSource, TraceEvent


def turn_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    """Turn starts, redeliveries, retries, answers, releases and failures, as trace events."""
    events: list[TraceEvent] = []
    rows = tx.fetch_all("turn_events_for_correlation", {"correlation_id": correlation_id})
    for row in rows:
        detail = f": {_short(row['detail'])}" if row["detail"] else ""
        worker = f" [{row['worker']}]" if row["worker"] else ""
        events.append(
            TraceEvent(
                float(row["at"]),
                f"turn.{row['event']}",
                f"turn {row['turn_id']} attempt {row['attempt']} {row['event']}{detail}{worker}",
                int(row["id"]),
                {"turn_id": int(row["turn_id"])},
            )
        )
    return events


def _short(text: object, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


SOURCE = TimelineSource("turns", RANK_TURNS, turn_trace_events)
