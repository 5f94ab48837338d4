"""Timeline sources: how a capability contributes its events to ``relaybox trace``.

A capability with a table of events (inbound, steps, deliveries, failures, and tasks and turns
to come) has a ``timeline.py`` module that defines one :class:`TimelineSource`: a name, a rank
and a function ``(tx, correlation_id) -> [TraceEvent]`` that reads its rows. ``trace.py``
lists the built-in ones explicitly (a trace never depends on import order); other code adds
its own with :func:`register_source`. Capability modules import only this module, never
``trace.py``, so there is no import cycle between the trace and what it shows.

Order is deterministic, never a timestamp alone: events sort by time, then by the source's
``rank`` (a cause's source ranks before its effects'), then by the source's own sequence
number (row ids), so two events in the same millisecond always come out in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from relaybox.store import Tx

# Ranks of the built-in sources; pick a free one between them for a new source.
RANK_INBOUND = 10
RANK_TURNS = 15
RANK_STEPS = 20
RANK_TASKS = 25
RANK_DELIVERIES = 30
RANK_ATTEMPTS = 40
RANK_DELIVERY_EVENTS = 45
RANK_FAILURES = 50
RANK_WORKER_EVENTS = 60


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


_REGISTERED: dict[str, TimelineSource] = {}


def register_source(source: TimelineSource) -> None:
    """Add (or replace, by name) a source of your own; every later trace includes its events."""
    _REGISTERED[source.name] = source


def registered_sources() -> list[TimelineSource]:
    return list(_REGISTERED.values())


def short(text: object, limit: int = 120) -> str:
    """One line of at most ``limit`` characters (user text in a timeline summary)."""
    if text is None:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
