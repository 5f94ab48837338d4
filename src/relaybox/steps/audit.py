"""The failure audit call of steps: the single place a step failure reaches ``job_failures``."""

from __future__ import annotations

import json
from typing import Any

from relaybox.audit import FailureReport, arecord_job_failure
from relaybox.config import AuditConfig
from relaybox.steps.records import StepRecord
from relaybox.store import Store

QUEUE = "steps"


async def report_step_failure(
    store: Store,
    config: AuditConfig,
    record: StepRecord,
    error: BaseException | str,
    *,
    stage: str,
    correlation_id: str,
    worker: str,
    terminal: bool,
    error_type: str | None = None,
) -> None:
    """Record a step failure (never raises; falls back to a log line, see relaybox.audit).

    The payload is the step's intent (tool, arguments, model, sampling): the reproducer.
    """
    report = FailureReport(
        queue=QUEUE,
        error=error,
        job_id=record.step_id,
        stage=stage,
        resource_id=record.resource_id,
        correlation_id=correlation_id,
        attempt=record.attempts,
        payload=_intent_payload(record),
        terminal=terminal,
        error_type=error_type,
        worker_id=worker,
    )
    await arecord_job_failure(store, report, config)


def _intent_payload(record: StepRecord) -> Any:
    try:
        return json.loads(record.intent_json)
    except ValueError:  # a very large intent is stored cut; keep it as text
        return record.intent_json
