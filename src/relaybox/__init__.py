"""relaybox: durable side effects for conversational agents.

Every reply reaches the user exactly once and in order; every failure lands where an operator
can query it. Start with :func:`relaybox.open` and :class:`relaybox.Worker`.
"""

from relaybox.audit import FailureFilter, FailureReport, JobFailure, record_job_failure
from relaybox.client import Relaybox, open
from relaybox.config import ChannelConfig, Config, RetryPolicy, WorkerConfig, load_config
from relaybox.errors import (
    ConfigError,
    InvalidInbound,
    InvalidReply,
    InvalidState,
    NotFound,
    RelayboxError,
    ReplyKeyConflict,
    StoreUnavailable,
    TurnLeaseLost,
    UnknownChannel,
)
from relaybox.inbound import InboundMessage, InboundResult, InboundState
from relaybox.memory import (
    InvalidMemory,
    InvalidScope,
    MemoryRouter,
    Scope,
    ScopedMemory,
    VersionConflict,
    WorkingMemory,
)
from relaybox.models import Attempt, Delivery, Outcome, Part, Status
from relaybox.outbox.enqueue import EnqueueResult
from relaybox.steps import (
    AgentRun,
    Intent,
    InvalidIntent,
    NoCurrentStep,
    RetryableStepError,
    StepContext,
    StepError,
    StepFailed,
    StepInProgress,
    StepIntentMismatch,
    StepNeedsReconciliation,
    StepResult,
    StepTimedOut,
    StepWaitTimeout,
    ToolStep,
    agent_run,
    current_step,
    intent_hash,
)
from relaybox.trace import Trace, TraceEvent
from relaybox.turns.api import Turn, TurnScope
from relaybox.turns.records import TurnRecord, TurnStatus
from relaybox.turns.transitions import Outcome as TurnOutcome
from relaybox.worker.worker import Worker

__all__ = [
    "AgentRun",
    "Attempt",
    "ChannelConfig",
    "Config",
    "ConfigError",
    "Delivery",
    "EnqueueResult",
    "FailureFilter",
    "FailureReport",
    "InboundMessage",
    "InboundResult",
    "InboundState",
    "Intent",
    "InvalidInbound",
    "InvalidIntent",
    "InvalidMemory",
    "InvalidReply",
    "InvalidScope",
    "InvalidState",
    "JobFailure",
    "MemoryRouter",
    "NoCurrentStep",
    "NotFound",
    "Outcome",
    "Part",
    "Relaybox",
    "RelayboxError",
    "ReplyKeyConflict",
    "RetryPolicy",
    "RetryableStepError",
    "Scope",
    "ScopedMemory",
    "Status",
    "StepContext",
    "StepError",
    "StepFailed",
    "StepInProgress",
    "StepIntentMismatch",
    "StepNeedsReconciliation",
    "StepResult",
    "StepTimedOut",
    "StepWaitTimeout",
    "StoreUnavailable",
    "ToolStep",
    "Trace",
    "TraceEvent",
    "Turn",
    "TurnLeaseLost",
    "TurnOutcome",
    "TurnRecord",
    "TurnScope",
    "TurnStatus",
    "UnknownChannel",
    "VersionConflict",
    "Worker",
    "WorkerConfig",
    "WorkingMemory",
    "agent_run",
    "current_step",
    "intent_hash",
    "load_config",
    "open",
    "record_job_failure",
]
