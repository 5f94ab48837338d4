"""Plain records of steps and their journal, as the store keeps them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StepStatus(StrEnum):
    """Life cycle of a step (see the diagram in store/sql/*/steps.sql)."""

    RUNNING = "running"  # claimed; a run holds the lease
    PENDING = "pending"  # a retryable error: no outcome, the next run runs the body again
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a stored error: repeats get the same error
    TIMED_OUT = "timed_out"  # a stored timeout (steps not declared retry-safe)
    NEEDS_RECONCILIATION = "needs_reconciliation"  # crashed mid-way, unsafe to run again


FINAL_STATUSES = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.TIMED_OUT})


@dataclass(frozen=True, slots=True)
class StepRecord:
    id: int
    resource_id: str
    step_id: str
    generation: int
    tool: str
    intent_hash: str
    intent_json: str
    idempotency_key: str
    correlation_id: str
    status: StepStatus
    retry_safe: bool
    attempts: int
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: float | None
    result: Any
    error_type: str | None
    error_message: str | None
    reply_delivery_ids: tuple[int, ...]
    created_at: float
    updated_at: float
    finished_at: float | None
    expires_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StepRecord:
        replies = row["reply_delivery_ids"]
        return cls(
            id=int(row["id"]),
            resource_id=row["resource_id"],
            step_id=row["step_id"],
            generation=int(row["generation"]),
            tool=row["tool"],
            intent_hash=row["intent_hash"],
            intent_json=row["intent_json"],
            idempotency_key=row["idempotency_key"],
            correlation_id=row["correlation_id"],
            status=StepStatus(row["status"]),
            retry_safe=bool(row["retry_safe"]),
            attempts=int(row["attempts"]),
            lease_owner=row["lease_owner"],
            lease_epoch=int(row["lease_epoch"]),
            lease_expires_at=_opt_float(row["lease_expires_at"]),
            result=None if row["result_json"] is None else json.loads(row["result_json"]),
            error_type=row["error_type"],
            error_message=row["error_message"],
            reply_delivery_ids=tuple(json.loads(replies)) if replies else (),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            finished_at=_opt_float(row["finished_at"]),
            expires_at=_opt_float(row["expires_at"]),
        )

    def lease_lapsed(self, now: float) -> bool:
        return self.status is StepStatus.RUNNING and (
            self.lease_expires_at is None or self.lease_expires_at < now
        )

    def outcome_expired(self, now: float) -> bool:
        return (
            self.status in FINAL_STATUSES and self.expires_at is not None and self.expires_at <= now
        )

    def needs_reconciliation(self, now: float) -> bool:
        """Flagged, or a run of an unsafe step stopped and nobody has looked since."""
        if self.status is StepStatus.NEEDS_RECONCILIATION:
            return True
        return self.lease_lapsed(now) and not self.retry_safe

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["status"] = str(self.status)
        data["reply_delivery_ids"] = list(self.reply_delivery_ids)
        data["intent"] = _intent_or_none(self.intent_json)
        return data


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One append-only row of the step journal (``step_events``)."""

    id: int
    step_pk: int
    resource_id: str
    step_id: str
    correlation_id: str
    event: str
    attempt: int | None
    worker: str | None
    at: float
    detail: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StepEvent:
        return cls(
            id=int(row["id"]),
            step_pk=int(row["step_pk"]),
            resource_id=row["resource_id"],
            step_id=row["step_id"],
            correlation_id=row["correlation_id"],
            event=row["event"],
            attempt=None if row["attempt"] is None else int(row["attempt"]),
            worker=row["worker"],
            at=float(row["at"]),
            detail=row["detail"],
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _intent_or_none(text: str) -> Any:
    """The stored intent as JSON, or None if it was too large and kept only as a preview."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
