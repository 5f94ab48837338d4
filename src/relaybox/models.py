"""Plain records that cross the boundary between the store, the worker and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Life cycle of a delivery.

    ``queued`` and ``sending`` are active; every other status is final until an operator acts.
    """

    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"  # an ambiguous send parked for an operator
    EXPIRED = "expired"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (Status.QUEUED, Status.SENDING)


class Outcome(StrEnum):
    """What a transport says happened to one part."""

    SURFACED = "surfaced"  # the user can see it
    NOT_SURFACED = "not_surfaced"  # accepted but not shown: not delivered, retried
    DUPLICATE = "duplicate"  # the far side already had this GUID: delivered


@dataclass(frozen=True, slots=True)
class Part:
    index: int
    guid: str
    body: str
    outcome: str | None = None
    transport_message_id: str | None = None
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One reply of one or more parts to one conversation thread."""

    id: int
    reply_key: str
    channel: str
    thread_id: str
    recipient: str
    resource_id: str
    correlation_id: str
    status: Status
    part_count: int
    start_index: int  # the resume cursor: parts before it were acknowledged
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    available_at: float
    expires_at: float | None
    finished_at: float | None
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: float | None
    in_flight_index: int | None
    last_error: str | None
    parts: tuple[Part, ...] = field(default=())
    runs_before: int = 0  # runs of earlier rounds (before an operator's retry)
    trace_context: str | None = None  # W3C traceparent of the enqueuing code (OpenTelemetry)

    @property
    def run(self) -> int:
        """The current run's number, counting across operator retries (attempt rows use it)."""
        return self.runs_before + self.attempts

    @classmethod
    def from_row(cls, row: dict[str, Any], parts: tuple[Part, ...] = ()) -> Delivery:
        return cls(
            id=int(row["id"]),
            reply_key=row["reply_key"],
            channel=row["channel"],
            thread_id=row["thread_id"],
            recipient=row["recipient"],
            resource_id=row["resource_id"],
            correlation_id=row["correlation_id"],
            status=Status(row["status"]),
            part_count=int(row["part_count"]),
            start_index=int(row["start_index"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            available_at=float(row["available_at"]),
            expires_at=_opt_float(row["expires_at"]),
            finished_at=_opt_float(row["finished_at"]),
            lease_owner=row["lease_owner"],
            lease_epoch=int(row["lease_epoch"]),
            lease_expires_at=_opt_float(row["lease_expires_at"]),
            in_flight_index=None if row["in_flight_index"] is None else int(row["in_flight_index"]),
            last_error=row["last_error"],
            parts=parts,
            runs_before=int(row.get("runs_before") or 0),
            trace_context=row.get("trace_context"),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "parts"
        }
        data["status"] = str(self.status)
        data["run"] = self.run
        data["parts"] = [
            {
                "index": p.index,
                "guid": p.guid,
                "body": p.body,
                "outcome": p.outcome,
                "transport_message_id": p.transport_message_id,
                "sent_at": p.sent_at,
            }
            for p in self.parts
        ]
        return data


@dataclass(frozen=True, slots=True)
class Attempt:
    """One append-only row per send (or per decision that ended a run)."""

    id: int
    delivery_id: int
    attempt: int
    part_index: int | None
    guid: str | None
    worker_id: str
    started_at: float
    latency_ms: float | None
    outcome: str
    error: str | None
    transport_message_id: str | None
    correlation_id: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Attempt:
        return cls(
            id=int(row["id"]),
            delivery_id=int(row["delivery_id"]),
            attempt=int(row["attempt"]),
            part_index=None if row["part_index"] is None else int(row["part_index"]),
            guid=row["guid"],
            worker_id=row["worker_id"],
            started_at=float(row["started_at"]),
            latency_ms=_opt_float(row["latency_ms"]),
            outcome=row["outcome"],
            error=row["error"],
            transport_message_id=row["transport_message_id"],
            correlation_id=row["correlation_id"],
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
