"""``relaybox trace``: everything that happened for one correlation id, as one timeline.

A trace is a merge of *timeline sources*. A source is a function that, given a correlation id,
returns the events its tables hold (an inbound message received, a delivery enqueued, each
send attempt, each failure, ...). relaybox's own capabilities list their source in
:func:`builtin_sources` (an explicit list, so a trace never depends on import order); other
code can add one with :func:`register_source`.

Order is deterministic, never a timestamp alone: events sort by time, then by the source's
``rank`` (a cause's source ranks before its effects': inbound 10, steps 20, deliveries 30,
attempts 40, failures 50, worker events 60), then by the source's own sequence number (row
ids), so two events in the same millisecond always come out in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from relaybox.errors import NotFound, RelayboxError
from relaybox.store import Tx
from relaybox.store.base import Unit

# Ranks of the built-in sources, and those reserved for sources other modules register.
RANK_INBOUND = 10
RANK_TURNS = 15
RANK_STEPS = 20
RANK_TASKS = 25
RANK_DELIVERIES = 30
RANK_ATTEMPTS = 40
RANK_FAILURES = 50
RANK_WORKER_EVENTS = 60


class AmbiguousReference(RelayboxError):
    """A bare number names both an inbound message and a delivery."""


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened. ``seq`` breaks ties within a source (e.g. the row id)."""

    at: float
    kind: str  # e.g. "inbound.received", "attempt.transient", "failure"
    summary: str
    seq: int
    refs: dict[str, Any] = field(default_factory=dict)  # ids to look further: delivery_id, ...
    source: str = ""
    rank: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


EventsOf = Callable[[Tx, str], list[TraceEvent]]


@dataclass(frozen=True)
class TimelineSource:
    name: str
    rank: int
    events: EventsOf  # (tx, correlation_id) -> events; runs inside a read transaction


@dataclass(frozen=True)
class Trace:
    correlation_id: str
    subject: str  # what was asked for: "inbound 3", "delivery 12", "correlation ..."
    events: tuple[TraceEvent, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "subject": self.subject,
            "events": [{"n": n, **e.to_json()} for n, e in enumerate(self.events, 1)],
        }


def merge(batches: list[tuple[TimelineSource, list[TraceEvent]]]) -> tuple[TraceEvent, ...]:
    """One timeline from every source's events, in a deterministic order."""
    stamped = [
        TraceEvent(e.at, e.kind, e.summary, e.seq, e.refs, source.name, source.rank)
        for source, events in batches
        for e in events
    ]
    stamped.sort(key=lambda e: (e.at, e.rank, e.source, e.seq, e.kind))
    return tuple(stamped)


def trace(ref: str) -> Unit[Trace]:
    """Unit (read): the timeline of an inbound id, a delivery id or a correlation id.

    ``ref`` may be ``inbound:<id>``, ``delivery:<id>``, ``task:<id>``, a correlation id, or a
    bare number when only one inbound message or delivery has that id.
    """

    def unit(tx: Tx) -> Trace:
        correlation_id, subject = resolve(tx, ref)
        batches = [(source, source.events(tx, correlation_id)) for source in sources()]
        return Trace(correlation_id, subject, merge(batches))

    return unit


def resolve(tx: Tx, ref: str) -> tuple[str, str]:
    """The correlation id ``ref`` stands for, and a label for it."""
    text = ref.strip()
    kind, _, number = text.partition(":")
    if kind in ("inbound", "delivery", "task") and number.strip().isdigit():
        return _correlation_of(tx, kind, int(number)), f"{kind} {int(number)}"
    if text and tx.fetch_one("trace_correlation_known", {"correlation_id": text}):
        return text, f"correlation {text}"
    if text.isdigit():
        found = {
            what: tx.fetch_one(f"trace_correlation_of_{what}", {"id": int(text)})
            for what in ("inbound", "delivery")
        }
        hits = [what for what, row in found.items() if row is not None]
        if len(hits) == 2:
            raise AmbiguousReference(
                f"{text} is both an inbound message and a delivery;"
                f" say inbound:{text} or delivery:{text}"
            )
        if hits:
            row = found[hits[0]]
            assert row is not None
            return row["correlation_id"], f"{hits[0]} {text}"
    raise NotFound(
        f"nothing to trace for {ref!r}: no inbound message, delivery or failure with that"
        " id or correlation id"
    )


def _correlation_of(tx: Tx, kind: str, number: int) -> str:
    row = tx.fetch_one(f"trace_correlation_of_{kind}", {"id": number})
    if row is None:
        what = {"inbound": "inbound message", "task": "task"}.get(kind, "delivery")
        raise NotFound(f"{what} {number} does not exist")
    return str(row["correlation_id"])


# -- the sources ---------------------------------------------------------------------------


def builtin_sources() -> list[TimelineSource]:
    """relaybox's own sources. A capability with a table of events adds its line here."""
    from relaybox.steps.timeline import step_trace_events  # imports this module
    from relaybox.tasks.timeline import task_trace_events  # imports this module
    from relaybox.turns.timeline import turn_trace_events

    return [
        TimelineSource("inbound", RANK_INBOUND, _inbound_events),
        TimelineSource("turns", RANK_TURNS, turn_trace_events),
        TimelineSource("steps", RANK_STEPS, step_trace_events),
        TimelineSource("tasks", RANK_TASKS, task_trace_events),
        TimelineSource("deliveries", RANK_DELIVERIES, _delivery_events),
        TimelineSource("attempts", RANK_ATTEMPTS, _attempt_events),
        TimelineSource("failures", RANK_FAILURES, _failure_events),
    ]


_REGISTERED: dict[str, TimelineSource] = {}


def register_source(source: TimelineSource) -> None:
    """Add (or replace, by name) a source of your own; every later trace includes its events."""
    _REGISTERED[source.name] = source


def sources() -> list[TimelineSource]:
    chosen = {s.name: s for s in builtin_sources()}
    chosen.update(_REGISTERED)
    return sorted(chosen.values(), key=lambda s: (s.rank, s.name))


# -- built-in sources --------------------------------------------------------------------


def _inbound_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_inbound", {"correlation_id": correlation_id}):
        ident, seq = int(row["id"]), int(row["id"]) * 4
        refs = {"inbound_id": ident}
        text = _short(row["body"])
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


def _delivery_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
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
            error = f": {_short(row['last_error'])}" if row["last_error"] else ""
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


def _attempt_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for row in tx.fetch_all("trace_attempts", {"correlation_id": correlation_id}):
        part = "" if row["part_index"] is None else f" part {int(row['part_index']) + 1}"
        latency = "" if row["latency_ms"] is None else f", {float(row['latency_ms']):.1f} ms"
        detail = f": {_short(row['error'])}" if row["error"] else ""
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


def _failure_events(tx: Tx, correlation_id: str) -> list[TraceEvent]:
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
                f" {_short(row['message'])} ({final}{attempt})",
                int(row["id"]),
                {"failure_id": int(row["id"])},
            )
        )
    return events


def _short(text: object, limit: int = 120) -> str:
    if text is None:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
