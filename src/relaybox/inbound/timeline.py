"""The inbound messages' source for ``relaybox trace``: received, duplicates, handled."""

from __future__ import annotations

from relaybox.store import Tx
from relaybox.timeline import RANK_INBOUND, TimelineSource, TraceEvent, short


def inbound_trace_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_inbound", {"correlation_id": correlation_id}):
        ident, seq = int(row["id"]), int(row["id"]) * 4
        refs = {"inbound_id": ident}
        text = short(row["body"])
        events.append(
            TraceEvent(
                float(row["received_at"]),
                "inbound.received",
                f"inbound {ident} received on {row['channel']} (message {row['external_id']})"
                f" in {row['thread_id']} from {row['resource_id']}" + (f": {text}" if text else ""),
                seq,
                refs,
            )
        )
        if row["last_duplicate_at"] is not None:
            events.append(
                TraceEvent(
                    float(row["last_duplicate_at"]),
                    "inbound.duplicate",
                    f"the same message arrived again ({row['duplicate_count']}x in all);"
                    " recognised as a duplicate, not processed twice",
                    seq + 1,
                    refs,
                )
            )
        if row["handled_at"] is not None:
            marked = row["status"] == "no_reply_needed"
            note = f" ({row['note']})" if marked and row["note"] else ""
            events.append(
                TraceEvent(
                    float(row["handled_at"]),
                    "inbound.no_reply_needed" if marked else "inbound.reply_enqueued",
                    ("marked 'no reply needed'" + note) if marked else "reply enqueued",
                    seq + 2,
                    refs,
                )
            )
    return events


SOURCE = TimelineSource("inbound", RANK_INBOUND, inbound_trace_events)
