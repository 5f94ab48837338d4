"""The delivery engine's failures, as audit records: queue ``deliveries``, job id = delivery id.

Every attempt that did not surface a part (transient, permanent, not surfaced, ambiguous,
rate-limited) and every decision that ended a delivery without delivering it (failed after
the last attempt, expired, parked as unknown) becomes one ``job_failures`` row, carrying the
delivery's channel, thread, user and correlation id, and the part as payload for reproduction.
"""

from __future__ import annotations

from typing import Any

from relaybox.audit.record import FailureReport
from relaybox.models import Delivery, Part

DELIVERY_QUEUE = "deliveries"

# Outcomes that have no exception of their own get a readable error type.
_ERROR_TYPES = {
    "permanent": "PermanentError",
    "not_surfaced": "NotSurfaced",
    "expired": "Expired",
    "parked": "AmbiguousSend",
}
_STAGES = {"parked": "reconcile", "expired": "expire"}


def delivery_failure(
    delivery: Delivery,
    part: Part | None,
    *,
    outcome: str,
    message: str,
    terminal: bool,
    worker_id: str | None = None,
    error: BaseException | None = None,
    stage: str | None = None,
) -> FailureReport:
    """The audit record of one failed attempt (or final decision) on ``delivery``."""
    error_type = _ERROR_TYPES.get(outcome) or (type(error).__name__ if error else outcome)
    return FailureReport(
        queue=DELIVERY_QUEUE,
        job_id=str(delivery.id),
        stage=stage or _STAGES.get(outcome, "send"),
        channel=delivery.channel,
        thread_id=delivery.thread_id,
        resource_id=delivery.resource_id,
        correlation_id=delivery.correlation_id,
        attempt=delivery.run,
        error=error if error is not None else message,
        message=message,
        error_type=error_type,
        terminal=terminal,
        worker_id=worker_id,
        payload=delivery_payload(delivery, part, outcome),
    )


def delivery_payload(delivery: Delivery, part: Part | None, outcome: str) -> dict[str, Any]:
    """What an operator needs to reproduce the send: the part, its GUID, where it went."""
    payload: dict[str, Any] = {
        "outcome": outcome,
        "delivery_id": delivery.id,
        "reply_key": delivery.reply_key,
        "channel": delivery.channel,
        "thread_id": delivery.thread_id,
        "recipient": delivery.recipient,
        "part_count": delivery.part_count,
        "start_index": delivery.start_index,
        "attempts": delivery.attempts,
        "max_attempts": delivery.max_attempts,
        "run": delivery.run,
    }
    if part is not None:
        payload.update(part_index=part.index, guid=part.guid, body=part.body)
    return payload


def expired_failure(delivery: Delivery) -> FailureReport:
    """The audit record of a reply the expirer ended (older than its channel's max age)."""
    in_range = 0 <= delivery.start_index < len(delivery.parts)
    part = delivery.parts[delivery.start_index] if in_range else None
    return delivery_failure(
        delivery,
        part,
        outcome="expired",
        message="expired: older than the channel's max age before it could be sent",
        terminal=True,
    )


def worker_failure(delivery: Delivery, error: BaseException, worker_id: str) -> FailureReport:
    """A run the worker had to abandon (typically: the store went away mid-run)."""
    return FailureReport(
        queue=DELIVERY_QUEUE,
        job_id=str(delivery.id),
        stage="worker",
        channel=delivery.channel,
        thread_id=delivery.thread_id,
        resource_id=delivery.resource_id,
        correlation_id=delivery.correlation_id,
        attempt=delivery.run,
        error=error,
        terminal=False,
        worker_id=worker_id,
        payload=delivery_payload(delivery, None, "worker_error"),
    )
