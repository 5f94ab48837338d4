"""Idempotent agent steps (spec C5): a tool's side effect runs once per step and intent.

Use ``rb.step(...)`` or the ``@rb.tool_step(...)`` decorator; see docs/steps.md.
"""

from relaybox.steps.calls import AgentRun, ToolCall, agent_run, model_step_id, tool_step_id
from relaybox.steps.context import StepContext
from relaybox.steps.current import NoCurrentStep, current_step, current_step_or_none
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
from relaybox.steps.runner import CONTROL_FLOW, StepPolicy, StepResult, StepRunner
from relaybox.steps.tool import ToolStep

__all__ = [
    "CONTROL_FLOW",
    "AgentRun",
    "Intent",
    "InvalidIntent",
    "InvalidStep",
    "NoCurrentStep",
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
    "ToolCall",
    "ToolStep",
    "agent_run",
    "current_step",
    "current_step_or_none",
    "intent_hash",
    "model_step_id",
    "tool_step_id",
]
