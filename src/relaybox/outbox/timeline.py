"""The outbox's sources for ``relaybox trace``: deliveries, their attempts, their events.

Events (``outbox/events.py``) are what explains a gap between runs: an operator's retry or
resolve, a give-up, a park, an expiry, a decision made with a lost lease.
"""

from __future__ import annotations

from relaybox.store import Tx
from relaybox.timeline import (
    RANK_ATTEMPTS,
    RANK_DELIVERIES,
    RANK_DELIVERY_EVENTS,
    TimelineSource,
    TraceEvent,
    short,
)


def delivery_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_deliveries", {"correlation_id": correlation_id}):
        ident = int(row["id"])
        refs = {"delivery_id": ident}
        link = f" (reply to inbound {row['inbound_id']})" if row.get("inbound_id") else ""
        events.append(
            TraceEvent(
                float(row["created_at"]),
                "delivery.enqueued",
                f"delivery {ident} enqueued{link}: {row['part_count']} part(s) to"
                f" {row['recipient']} in {row['thread_id']} via {row['channel']};"
                f" now {row['status']}, {row['start_index']}/{row['part_count']} sent",
                ident * 2,
                refs,
            )
        )
        if row["finished_at"] is not None:
            error = f": {short(row['last_error'])}" if row["last_error"] else ""
            events.append(
                TraceEvent(
                    float(row["finished_at"]),
                    f"delivery.{row['status']}",
                    f"delivery {ident} {row['status']}{error}",
                    ident * 2 + 1,
                    refs,
                )
            )
    return events


def attempt_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_attempts", {"correlation_id": correlation_id}):
        part = "" if row["part_index"] is None else f" part {int(row['part_index']) + 1}"
        latency = "" if row["latency_ms"] is None else f", {float(row['latency_ms']):.1f} ms"
        detail = f": {short(row['error'])}" if row["error"] else ""
        message = (
            f" (message id {row['transport_message_id']})" if row["transport_message_id"] else ""
        )
        events.append(
            TraceEvent(
                float(row["started_at"]),
                f"attempt.{row['outcome']}",
                f"delivery {row['delivery_id']}{part}, run {row['attempt']}: {row['outcome']}"
                f"{message}{detail} [{row['worker_id']}{latency}]",
                int(row["id"]),
                {"delivery_id": int(row["delivery_id"]), "attempt_id": int(row["id"])},
            )
        )
    return events


def delivery_event_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_delivery_events", {"correlation_id": correlation_id}):
        ident = int(row["id"])
        count = int(row["action_count"])
        bulk = f" (one of {count} in action {row['action_id']})" if count > 1 else ""
        run = f" after run {row['run']}" if row["run"] is not None else ""
        change = (
            f" {row['from_status']} -> {row['to_status']}"
            if row["from_status"] and row["to_status"]
            else (f" (now {row['to_status']})" if row["to_status"] else "")
        )
        detail = f": {short(row['detail'])}" if row["detail"] else ""
        events.append(
            TraceEvent(
                float(row["at"]),
                f"delivery.event.{row['kind']}",
                f"delivery {row['delivery_id']} {row['kind']} by {row['actor']}{bulk}{run}"
                f"{change}{detail}",
                ident,
                {"delivery_id": int(row["delivery_id"]), "event_id": ident},
            )
        )
    return events


SOURCES = (
    TimelineSource("deliveries", RANK_DELIVERIES, delivery_trace_events),
    TimelineSource("attempts", RANK_ATTEMPTS, attempt_trace_events),
    TimelineSource("delivery_events", RANK_DELIVERY_EVENTS, delivery_event_trace_events),
)
