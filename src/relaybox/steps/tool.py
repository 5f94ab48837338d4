"""``@rb.tool_step(...)``: turn an async tool function into an idempotent step.

The intent is built from the tool name and the call's keyword arguments (plus the model and
sampling settings given to the decorator), so calling the tool twice with the same step id
and the same arguments runs it once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from relaybox.steps.context import StepContext
from relaybox.steps.errors import InvalidStep
from relaybox.steps.intent import Intent
from relaybox.steps.runner import StepPolicy, StepRunner

ToolFn = Callable[..., Awaitable[Any]]


class ToolStep:
    """An async tool wrapped as a step; call it with keyword arguments only.

    >>> @rb.tool_step("charge_card", model="m-1", sampling={"temperature": 0})  # doctest: +SKIP
    ... async def charge(step: StepContext, *, amount: int, currency: str) -> dict:
    ...     return await psp.charge(amount, currency, idempotency_key=step.key)
    >>> await charge(step_id="inbound-9f2c:charge", resource_id="+15550100",  # doctest: +SKIP
    ...              amount=1200, currency="EUR")
    """

    def __init__(
        self,
        runner: StepRunner,
        fn: ToolFn,
        tool: str,
        *,
        model: str | None,
        sampling: Mapping[str, Any] | None,
        policy: StepPolicy,
    ) -> None:
        self._runner = runner
        self._fn = fn
        self.tool = tool
        self._model = model
        self._sampling = sampling
        self._policy = policy
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", tool)

    def intent(self, **args: Any) -> Intent:
        """The intent a call with ``args`` would have (to inspect or log its hash)."""
        return Intent(self.tool, args, model=self._model, sampling=self._sampling)

    async def __call__(
        self,
        *,
        step_id: str,
        resource_id: str,
        correlation_id: str | None = None,
        new_step: bool = False,
        **args: Any,
    ) -> Any:
        """Run the tool once for this step; returns its (stored) result."""

        async def body(context: StepContext) -> Any:
            return await self._fn(context, **args)

        result = await self._runner.run(
            step_id,
            self.intent(**args),
            body,
            resource_id=resource_id,
            correlation_id=correlation_id,
            policy=self._policy,
            new_step=new_step,
        )
        return result.value


def tool_step(
    runner: StepRunner,
    tool: str | None = None,
    *,
    model: str | None = None,
    sampling: Mapping[str, Any] | None = None,
    policy: StepPolicy | None = None,
) -> Callable[[ToolFn], ToolStep]:
    """Decorator factory behind ``rb.tool_step``; ``tool`` defaults to the function's name."""

    def wrap(fn: ToolFn) -> ToolStep:
        name = tool or str(getattr(fn, "__name__", ""))
        if not name.strip() or name == "<lambda>":
            raise InvalidStep("a tool step needs a tool name: @rb.tool_step('charge_card')")
        return ToolStep(
            runner, fn, name, model=model, sampling=sampling, policy=policy or StepPolicy()
        )

    return wrap
