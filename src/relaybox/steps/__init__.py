"""Idempotent agent steps (spec C5): a tool's side effect runs once per step and intent.

Use ``rb.step(...)`` or the ``@rb.tool_step(...)`` decorator; see docs/steps.md.
"""

from relaybox.steps.context import StepContext
from relaybox.steps.errors import (
    InvalidIntent,
    InvalidStep,
    RetryableStepError,
    StepError,
    StepFailed,
    StepInProgress,
    StepIntentMismatch,
    StepLeaseLost,
    StepNeedsReconciliation,
    StepTimedOut,
    StepWaitTimeout,
)
from relaybox.steps.intent import Intent, intent_hash
from relaybox.steps.records import StepEvent, StepRecord, StepStatus
from relaybox.steps.runner import StepPolicy, StepResult, StepRunner
from relaybox.steps.tool import ToolStep

__all__ = [
    "Intent",
    "InvalidIntent",
    "InvalidStep",
    "RetryableStepError",
    "StepContext",
    "StepError",
    "StepEvent",
    "StepFailed",
    "StepInProgress",
    "StepIntentMismatch",
    "StepLeaseLost",
    "StepNeedsReconciliation",
    "StepPolicy",
    "StepRecord",
    "StepResult",
    "StepRunner",
    "StepStatus",
    "StepTimedOut",
    "StepWaitTimeout",
    "ToolStep",
    "intent_hash",
]
