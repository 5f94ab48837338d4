"""Inbound messages as the API returns them, with the state derived from their replies."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from relaybox.outbox.enqueue import EnqueueResult


class InboundState(StrEnum):
    """What became of an inbound message (the ``inbound_status`` view's ``state``).

    ``received`` means the work was accepted and nothing has been sent yet; ``replied`` only
    once a reply was delivered (every part surfaced) and none is pending or failed.
    """

    RECEIVED = "received"
    REPLY_PENDING = "reply_pending"
    REPLIED = "replied"
    REPLY_FAILED = "reply_failed"
    REPLY_CANCELLED = "reply_cancelled"
    NO_REPLY_NEEDED = "no_reply_needed"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One recorded inbound message and what its replies came to."""

    id: int
    channel: str
    external_id: str  # the platform's message id
    thread_id: str
    resource_id: str
    text: str | None
    meta: dict[str, Any] | None
    correlation_id: str
    status: str  # stored: received | reply_enqueued | no_reply_needed
    state: InboundState  # derived from the replies, see InboundState
    received_at: float
    handled_at: float | None
    note: str | None
    duplicate_count: int
    last_duplicate_at: float | None
    replies: int
    delivered_replies: int
    pending_replies: int
    failed_replies: int
    replied_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> InboundMessage:
        return cls(
            id=int(row["id"]),
            channel=row["channel"],
            external_id=row["external_id"],
            thread_id=row["thread_id"],
            resource_id=row["resource_id"],
            text=row["body"],
            meta=None if row["meta"] is None else json.loads(row["meta"]),
            correlation_id=row["correlation_id"],
            status=row["status"],
            state=InboundState(row["state"]),
            received_at=float(row["received_at"]),
            handled_at=_opt_float(row["handled_at"]),
            note=row["note"],
            duplicate_count=int(row["duplicate_count"]),
            last_duplicate_at=_opt_float(row["last_duplicate_at"]),
            replies=int(row["replies"]),
            delivered_replies=int(row["delivered_replies"]),
            pending_replies=int(row["pending_replies"]),
            failed_replies=int(row["failed_replies"]),
            replied_at=_opt_float(row["replied_at"]),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What :meth:`relaybox.Relaybox.record_inbound` answers.

    ``duplicate`` is True when this platform message was recorded before (a retried webhook,
    a replay after a restart): ``inbound`` is that first record. A duplicate that is
    ``unanswered`` may have lost its first attempt to a crash: ``rb.turn()`` tells whether to
    run it again. ``reply`` is the enqueued reply, when one was given and stored.
    """

    inbound: InboundMessage
    duplicate: bool
    reply: EnqueueResult | None = None

    @property
    def correlation_id(self) -> str:
        return self.inbound.correlation_id

    @property
    def unanswered(self) -> bool:
        """No reply was enqueued and the message was not marked "no reply needed": a duplicate
        of it may still need answering (its first attempt may have crashed)."""
        return self.inbound.status == "received"


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
