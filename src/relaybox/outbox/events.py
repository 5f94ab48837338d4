"""Delivery events: who decided what about a delivery, when, and in how big an action.

Attempt rows record sends. Everything else that changes a delivery's course is an *event* in
``delivery_events``: an operator's retry, resolve or cancel, and a worker's give-up (``failed``
after the last attempt or a permanent error), park (``unknown``), expiry, or a decision it
could not apply because its lease had been taken over (``lease_lost``). An event is written by
the transition it explains, in the same unit of work (``outbox/transitions.py``), so a crash
can never leave one without the other. ``relaybox trace`` shows them between the attempts.

Who acted is an :class:`Actor`: ``operator:<user>`` from the CLI, ``console:<user>`` from the
web console, the worker id for workers. One operator action on many deliveries (a bulk retry
in the console) gives each delivery's event the same ``action_id`` and the action's size in
``action_count``::

    actor = Actor.bulk("console:alice", count=len(ids))
    for delivery_id in ids:
        store.run_sync(transitions.retry(delivery_id, by=actor))
"""

from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relaybox.store import Tx


class EventKind(StrEnum):
    RETRIED = "retried"  # operator: send a failed/expired/unknown delivery again
    RESOLVED = "resolved"  # operator: settled a parked (unknown) delivery, then continued
    CANCELLED = "cancelled"  # operator or agent code
    GAVE_UP = "gave_up"  # worker: failed (attempts exhausted or a permanent error)
    PARKED = "parked"  # worker: an ambiguous send it cannot settle -> unknown
    EXPIRED = "expired"  # worker: older than the channel's max age
    LEASE_LOST = "lease_lost"  # worker: its decision was not applied; another worker holds it


@dataclass(frozen=True)
class Actor:
    """Who acts, and as part of which action (see the module docstring)."""

    who: str
    action_id: str | None = None
    action_count: int = 1

    def __post_init__(self) -> None:
        if not self.who or not self.who.strip():
            raise ValueError("an actor needs a name")
        if self.action_count < 1:
            raise ValueError("action_count must be at least 1")

    @classmethod
    def bulk(cls, who: str, count: int) -> Actor:
        """One action over ``count`` deliveries: every event gets the same fresh action id."""
        return cls(who, uuid.uuid4().hex, count)


def operator(user: str | None = None) -> Actor:
    """The CLI's actor: ``operator:<user>`` (the login name unless given)."""
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers) and no $USER
            user = "unknown"
    return Actor(f"operator:{user}")


API = Actor("api")  # agent code calling Relaybox.cancel()


def record_event(
    tx: Tx,
    *,
    delivery_id: int,
    correlation_id: str,
    kind: EventKind,
    actor: Actor,
    from_status: str | None,
    to_status: str | None,
    run: int | None,
    detail: str | None = None,
    at: float | None = None,
) -> None:
    """Append one event; call it inside the unit that makes the change it explains."""
    tx.execute(
        "insert_delivery_event",
        {
            "delivery_id": delivery_id,
            "correlation_id": correlation_id,
            "at": time.time() if at is None else at,
            "kind": str(kind),
            "actor": actor.who,
            "from_status": from_status,
            "to_status": to_status,
            "run": run,
            "detail": detail,
            "action_id": actor.action_id,
            "action_count": actor.action_count,
        },
    )


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    id: int
    delivery_id: int
    correlation_id: str
    at: float
    kind: str
    actor: str
    from_status: str | None
    to_status: str | None
    run: int | None
    detail: str | None
    action_id: str | None
    action_count: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeliveryEvent:
        return cls(
            id=int(row["id"]),
            delivery_id=int(row["delivery_id"]),
            correlation_id=row["correlation_id"],
            at=float(row["at"]),
            kind=row["kind"],
            actor=row["actor"],
            from_status=row["from_status"],
            to_status=row["to_status"],
            run=None if row["run"] is None else int(row["run"]),
            detail=row["detail"],
            action_id=row["action_id"],
            action_count=int(row["action_count"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
