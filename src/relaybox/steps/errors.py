"""Errors of idempotent steps. Each says which step, for which resource, and what to do."""

from __future__ import annotations

from relaybox.errors import RelayboxError


class StepError(RelayboxError):
    """Base class of the errors a step run raises on purpose."""


class InvalidIntent(StepError):
    """An intent cannot be hashed canonically (NaN, a set, a non-string key, ...)."""


class InvalidStep(StepError):
    """A step call is malformed (empty step id or resource id, bad option)."""


class StepIntentMismatch(StepError):
    """The step id was used before, for this resource, with a different intent."""


class StepInProgress(StepError):
    """Another run holds this step right now (fail-fast mode)."""


class StepWaitTimeout(StepInProgress):
    """Waited for a concurrent run of this step to finish, and it did not in time."""


class StepNeedsReconciliation(StepError):
    """The step started, stored no outcome, and is not safe to run again: an operator decides.

    See ``relaybox steps list --needs-reconciliation`` and ``relaybox steps resolve``. A turn
    that stops on this error waits (``blocked``) until the step is resolved, then runs again.
    """

    def __init__(
        self, message: str, *, step_id: str | None = None, resource_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.resource_id = resource_id


class StepLeaseLost(StepError):
    """This run lost its lease before storing its outcome; another run owns the step now."""


class StepFailed(StepError):
    """The step's stored outcome is an error (raised on the first run and on every repeat)."""

    def __init__(
        self, message: str, *, error_type: str, error_message: str, replayed: bool
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_message = error_message
        self.replayed = replayed


class StepTimedOut(StepError):
    """The step's body ran past its timeout (a recorded outcome, not a crash)."""

    def __init__(self, message: str, *, timeout: float | None, replayed: bool) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.replayed = replayed


class RetryableStepError(Exception):
    """Raise from a step body to say "no side effect happened; run me again later".

    The error is not stored as the step's outcome; the caller sees it (or its ``__cause__``)
    and the next run of the same step runs the body again.
    """
