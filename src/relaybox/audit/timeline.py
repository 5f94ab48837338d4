"""The failure audit's source for ``relaybox trace``: every ``job_failures`` row."""

from __future__ import annotations

from relaybox.store import Tx
from relaybox.timeline import RANK_FAILURES, TimelineSource, TraceEvent, short


def failure_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_failures", {"correlation_id": correlation_id}):
        where = "/".join(str(x) for x in (row["queue"], row["stage"]) if x)
        job = f" job {row['job_id']}" if row["job_id"] else ""
        attempt = f", attempt {row['attempt']}" if row["attempt"] is not None else ""
        final = "ended the job" if row["terminal"] else "will be retried"
        events.append(
            TraceEvent(
                float(row["created_at"]),
                "failure",
                f"failure {row['id']} [{where}{job}] {row['error_type']}:"
                f" {short(row['message'])} ({final}{attempt})",
                int(row["id"]),
                {"failure_id": int(row["id"])},
            )
        )
    return events


SOURCE = TimelineSource("failures", RANK_FAILURES, failure_trace_events)
