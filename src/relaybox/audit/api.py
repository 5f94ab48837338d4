"""``record_job_failure``: the one call every error path of any job makes.

    >>> try:                                                    # doctest: +SKIP
    ...     answer = await run_agent(message)
    ... except Exception as error:
    ...     record_job_failure(store, "agent", error, job_id=run_id, stage="llm",
    ...                        thread_id="chat-42", resource_id="+15550100",
    ...                        correlation_id=inbound.correlation_id, payload=message)
    ...     raise

It never raises: if the store cannot take the record, one JSON log line carries all of it.
"""

from __future__ import annotations

import time
from typing import Any

from relaybox.audit.record import FailureReport
from relaybox.audit.recorder import FailureAuditor
from relaybox.config import AuditConfig
from relaybox.store import Store


def record_job_failure(
    store: Store,
    queue: str,
    error: BaseException | str,
    *,
    job_id: str | int | None = None,
    payload: Any = None,
    stage: str | None = None,
    channel: str | None = None,
    thread_id: str | None = None,
    resource_id: str | None = None,
    correlation_id: str | None = None,
    attempt: int | None = None,
    terminal: bool = True,
    payload_ref: str | None = None,
    error_type: str | None = None,
    worker_id: str | None = None,
    config: AuditConfig | None = None,
) -> int | None:
    """Record that a job failed; return the failure id, or None if it was logged instead.

    Blocks until the row is committed (at most ``record_timeout_seconds``); from asyncio
    code use :meth:`relaybox.Relaybox.record_failure` or :func:`arecord_job_failure`.
    """
    report = FailureReport(
        queue=queue,
        error=error,
        job_id=job_id,
        payload=payload,
        stage=stage,
        channel=channel,
        thread_id=thread_id,
        resource_id=resource_id,
        correlation_id=correlation_id,
        attempt=attempt,
        terminal=terminal,
        payload_ref=payload_ref,
        error_type=error_type,
        worker_id=worker_id,
        at=time.time(),
    )
    return FailureAuditor(store, config).record_sync(report)


async def arecord_job_failure(
    store: Store, report: FailureReport, config: AuditConfig | None = None
) -> int | None:
    """Async variant taking a :class:`FailureReport`; never raises either."""
    return await FailureAuditor(store, config).record(report)
