"""Turns as the API returns them: the stored row and the journal of what happened to it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class TurnStatus(StrEnum):
    """Where a turn is (see the diagram in :mod:`relaybox.turns.transitions`)."""

    RUNNING = "running"  # an attempt holds the lease (or held it and died: lease lapsed)
    PENDING = "pending"  # an attempt stopped with an error; it runs again
    BLOCKED = "blocked"  # a step needs an operator (`relaybox steps resolve`); then it runs
    ANSWERED = "answered"  # the reply is enqueued (with its history and the inbound mark)
    NO_REPLY = "no_reply"  # handled, nothing to send
    ENDED = "ended"  # the handler returned without a reply (the message stays a gap)
    FAILED = "failed"  # out of attempts: in the failure audit and in `relaybox gaps`


FINISHED = frozenset({TurnStatus.ANSWERED, TurnStatus.NO_REPLY, TurnStatus.ENDED})


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: int
    inbound_id: int
    channel: str
    thread_id: str
    resource_id: str
    correlation_id: str
    status: TurnStatus
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: float | None
    available_at: float | None
    blocked_step: str | None
    reply_delivery_id: int | None
    error_type: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TurnRecord:
        return cls(
            id=int(row["id"]),
            inbound_id=int(row["inbound_id"]),
            channel=row["channel"],
            thread_id=row["thread_id"],
            resource_id=row["resource_id"],
            correlation_id=row["correlation_id"],
            status=TurnStatus(row["status"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            lease_owner=row["lease_owner"],
            lease_epoch=int(row["lease_epoch"]),
            lease_expires_at=_opt_float(row["lease_expires_at"]),
            available_at=_opt_float(row["available_at"]),
            blocked_step=row["blocked_step"],
            reply_delivery_id=_opt_int(row["reply_delivery_id"]),
            error_type=row["error_type"],
            error_message=row["error_message"],
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            finished_at=_opt_float(row["finished_at"]),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


@dataclass(frozen=True, slots=True)
class TurnEvent:
    id: int
    turn_id: int
    correlation_id: str
    event: str
    attempt: int | None
    worker: str | None
    at: float
    detail: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TurnEvent:
        return cls(
            id=int(row["id"]),
            turn_id=int(row["turn_id"]),
            correlation_id=row["correlation_id"],
            event=row["event"],
            attempt=_opt_int(row["attempt"]),
            worker=row["worker"],
            at=float(row["at"]),
            detail=row["detail"],
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
