"""The failure audit log (spec C3): every failed job, queryable by the operator questions.

Write side: :func:`record_job_failure` (any job: deliveries, agent runs, tool steps, user
code) and :class:`FailureAuditor` (what the worker uses). Read side: :mod:`.query`.
"""

from __future__ import annotations

from relaybox.audit.api import arecord_job_failure, record_job_failure
from relaybox.audit.query import FailureFilter, FailureGroup, JobFailure
from relaybox.audit.record import FailureReport
from relaybox.audit.recorder import FailureAuditor

__all__ = [
    "FailureAuditor",
    "FailureFilter",
    "FailureGroup",
    "FailureReport",
    "JobFailure",
    "arecord_job_failure",
    "record_job_failure",
]
