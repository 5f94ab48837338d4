"""Agent task contracts (spec C6): "on it", signs of life, and a result or an honest failure.

Start a task with :meth:`relaybox.Relaybox.tasks` (``rb.tasks.start(...)`` or
``rb.tasks.run(...)``); the worker's supervisor keeps the contract's deadlines. See
``docs/tasks.md``.
"""

from relaybox.tasks.models import (
    CancelOutcome,
    CancelResult,
    Contract,
    Conversation,
    EventKind,
    Outcome,
    Task,
    TaskEvent,
    TaskState,
)

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "Contract",
    "Conversation",
    "EventKind",
    "Outcome",
    "Task",
    "TaskEvent",
    "TaskState",
]
