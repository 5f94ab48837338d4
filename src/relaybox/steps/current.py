"""``relaybox.current_step()``: the step a tool body is running in, without a parameter for it.

A framework calls a tool with the arguments the model chose; the tool has no ``step``
parameter through which relaybox could hand it the idempotency key. The runner therefore puts
the running step's :class:`StepContext` in a context variable for the duration of the body, so
the tool can pass ``relaybox.current_step().key`` to a payment API as its idempotency key.
Context variables follow asyncio tasks, so concurrent tool calls each see their own step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from relaybox.steps.context import StepContext
from relaybox.steps.errors import StepError

_current: ContextVar[StepContext | None] = ContextVar("relaybox_current_step", default=None)


class NoCurrentStep(StepError):
    """``current_step()`` was called outside a step body (nothing to take a key from)."""


def current_step() -> StepContext:
    """The step whose body is running now; its ``.key`` is the idempotency key to pass on.

    >>> async def charge(amount: int) -> str:                         # doctest: +SKIP
    ...     return await psp.charge(amount, idempotency_key=relaybox.current_step().key)

    Raises :class:`NoCurrentStep` outside a step body: a tool called without relaybox would
    otherwise send no idempotency key, and a retry could charge twice.
    """
    context = _current.get()
    if context is None:
        raise NoCurrentStep(
            "relaybox.current_step() was called outside a step: run the tool through rb.step,"
            " @rb.tool_step, or a relaybox framework integration (docs/integrations.md)"
        )
    return context


def current_step_or_none() -> StepContext | None:
    """The running step, or None outside a step body."""
    return _current.get()


@contextmanager
def running(context: StepContext) -> Iterator[StepContext]:
    """Make ``context`` the current step while a body runs (used by the step runner)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
