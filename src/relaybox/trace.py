"""``relaybox trace``: everything that happened for one correlation id, as one timeline.

A trace is a merge of *timeline sources* (``relaybox/timeline.py``): each capability's
``timeline.py`` defines its source (an inbound message received, a delivery enqueued, each send
attempt, each operator action or give-up, each failure, ...). :func:`builtin_sources` lists
relaybox's own explicitly, so a trace never depends on import order; other code adds one with
:func:`relaybox.timeline.register_source`.

Order is deterministic, never a timestamp alone: events sort by time, then by the source's
``rank`` (a cause's source ranks before its effects': inbound 10, turns 15, steps 20, tasks 25,
deliveries 30,
attempts 40, delivery events 45, failures 50, worker events 60), then by the source's own
sequence number (row ids), so two events in the same millisecond always come out in the same
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relaybox.audit import timeline as audit_timeline
from relaybox.errors import NotFound, RelayboxError
from relaybox.inbound import timeline as inbound_timeline
from relaybox.outbox import timeline as outbox_timeline
from relaybox.steps import timeline as steps_timeline
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.tasks import timeline as tasks_timeline
from relaybox.timeline import (
    TimelineSource,
    TraceEvent,
    register_source,
    registered_sources,
)
from relaybox.turns import timeline as turns_timeline

__all__ = [
    "AmbiguousReference",
    "TimelineSource",
    "Trace",
    "TraceEvent",
    "builtin_sources",
    "register_source",
    "resolve",
    "sources",
    "trace",
]


class AmbiguousReference(RelayboxError):
    """A bare number names both an inbound message and a delivery."""


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
    if _row_id(text):
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


def _row_id(text: str) -> bool:
    """Digits that can be a row id (a 64-bit integer); longer numbers are not ids."""
    return text.isdigit() and int(text) <= 2**63 - 1


def _correlation_of(tx: Tx, kind: str, number: int) -> str:
    row = tx.fetch_one(f"trace_correlation_of_{kind}", {"id": number})
    if row is None:
        what = {"inbound": "inbound message", "task": "task"}.get(kind, "delivery")
        raise NotFound(f"{what} {number} does not exist")
    return str(row["correlation_id"])


# -- the sources ---------------------------------------------------------------------------


def builtin_sources() -> list[TimelineSource]:
    """relaybox's own sources. A capability with a table of events adds its line here."""
    return [
        inbound_timeline.SOURCE,
        turns_timeline.SOURCE,
        steps_timeline.SOURCE,
        tasks_timeline.SOURCE,
        *outbox_timeline.SOURCES,
        audit_timeline.SOURCE,
    ]


def sources() -> list[TimelineSource]:
    chosen = {s.name: s for s in builtin_sources()}
    chosen.update({s.name: s for s in registered_sources()})
    return sorted(chosen.values(), key=lambda s: (s.rank, s.name))
