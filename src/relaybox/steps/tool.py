"""``@rb.tool_step(...)``: an async tool that runs as an idempotent step, and is still a tool.

The decorated object is an ordinary ``async def`` with the tool's own name, docstring,
signature and annotations (``functools.wraps`` plus ``__signature__``), so pydantic-ai and the
OpenAI Agents SDK build the same JSON schema from it as from the undecorated function. A
leading ``step: StepContext`` parameter, if the tool declares one, is hidden from that
signature: relaybox passes it. Tools without it reach their step through
``relaybox.current_step()``.

The intent is built from the tool name and the call's arguments (plus the model and sampling
settings given to the decorator); a framework context argument (pydantic-ai's ``RunContext``,
the Agents SDK's ``RunContextWrapper`` / ``ToolContext``) is left out of it.

Which step a call is:

* explicit: ``await book(step_id="in-9f2c:book", resource_id="+15550100", people=2)``;
* inside a framework: the adapter names the step (``relaybox.steps.calls.tool_call``) from the
  turn, the model request and the call's position (see ``relaybox.steps.calls``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

from relaybox.steps.calls import pending_tool_call, tool_call
from relaybox.steps.context import StepContext
from relaybox.steps.errors import InvalidStep
from relaybox.steps.intent import Intent
from relaybox.steps.runner import StepPolicy, StepRunner

ToolFn = Callable[..., Awaitable[Any]]

# Keywords a call may add to name its step, unless the tool declares a parameter of that name.
_STEP_KEYWORDS = ("step_id", "resource_id", "correlation_id", "new_step")
# Framework context parameters: passed through to the tool, never part of the intent.
_CONTEXT_TYPES = ("RunContext", "RunContextWrapper", "ToolContext")


class ToolStep(Protocol):
    """What ``@rb.tool_step`` returns: the tool itself (same signature), run as a step.

    >>> @rb.tool_step("charge_card", model="m-1", sampling={"temperature": 0})  # doctest: +SKIP
    ... async def charge(step: StepContext, *, amount: int, currency: str) -> dict:
    ...     return await psp.charge(amount, currency, idempotency_key=step.key)
    >>> await charge(step_id="inbound-9f2c:charge", resource_id="+15550100",  # doctest: +SKIP
    ...              amount=1200, currency="EUR")
    """

    tool: str
    policy: StepPolicy
    __name__: str

    def intent(self, *args: Any, **kwargs: Any) -> Intent:
        """The intent a call with these arguments would have (to inspect or log its hash)."""
        ...

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...


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
        if not inspect.iscoroutinefunction(fn):
            raise InvalidStep(f"tool step {name!r} must be an async function (async def)")
        return _build(runner, fn, name, model, sampling, policy or StepPolicy())

    return wrap


def _build(
    runner: StepRunner,
    fn: ToolFn,
    name: str,
    model: str | None,
    sampling: Mapping[str, Any] | None,
    policy: StepPolicy,
) -> ToolStep:
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())
    takes_step = bool(parameters) and _is_step_parameter(parameters[0])
    exposed = signature.replace(parameters=parameters[1:]) if takes_step else signature
    declared = set(exposed.parameters)
    step_keywords = tuple(word for word in _STEP_KEYWORDS if word not in declared)
    context_names = {p.name for p in exposed.parameters.values() if _is_context(p.annotation)}
    var_keyword = next(
        (p.name for p in exposed.parameters.values() if p.kind is p.VAR_KEYWORD), None
    )

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return exposed.bind(*args, **kwargs)
        except TypeError as error:
            raise InvalidStep(f"tool step {name!r}: {error}") from None

    def intent_of(bound: inspect.BoundArguments) -> Intent:
        values: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            if key in context_names:
                continue
            if key == var_keyword:
                values.update(value)  # fn(step, **args): the intent is args, as it always was
            else:
                values[key] = value
        return Intent(name, values, model=model, sampling=sampling)

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        named = {word: kwargs.pop(word) for word in step_keywords if word in kwargs}
        bound = bind(args, kwargs)
        intent = intent_of(bound)
        step_id = named.get("step_id")
        resource_id = named.get("resource_id")
        correlation_id = named.get("correlation_id")
        adapter_call = pending_tool_call() if step_id is None else None
        if adapter_call is not None:
            step_id, correlation_id = adapter_call.step_id, adapter_call.correlation_id
            resource_id = adapter_call.resource_id
        if step_id is None or resource_id is None:
            raise InvalidStep(
                f"tool step {name!r} needs its step: call it with step_id=... and"
                " resource_id=..., or let a relaybox framework integration call it"
                " (docs/integrations.md)"
            )

        async def body(context: StepContext) -> Any:
            with tool_call(None):  # the name was for this call, not for tools it calls
                if takes_step:
                    return await fn(context, *bound.args, **bound.kwargs)
                return await fn(*bound.args, **bound.kwargs)

        result = await runner.run(
            step_id,
            intent,
            body,
            resource_id=resource_id,
            correlation_id=correlation_id,
            policy=policy,
            new_step=bool(named.get("new_step", False)),
        )
        return result.value

    def intent(*args: Any, **kwargs: Any) -> Intent:
        return intent_of(bind(args, kwargs))

    call.__signature__ = exposed  # type: ignore[attr-defined]
    annotations = dict(getattr(fn, "__annotations__", {}))
    if takes_step:
        annotations.pop(parameters[0].name, None)
    # __wrapped__ (from functools.wraps) stays: get_type_hints follows it to the tool's module
    # globals; inspect.signature stops at __signature__, so the step parameter stays hidden.
    call.__annotations__ = annotations
    step = cast(ToolStep, call)
    step.tool = name
    step.policy = policy
    step.intent = intent  # type: ignore[method-assign]
    return step


def _is_step_parameter(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    if annotation is StepContext:
        return True
    if isinstance(annotation, str):
        return annotation.split(".")[-1] == "StepContext"
    return annotation is inspect.Parameter.empty and parameter.name == "step"


def _is_context(annotation: object) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if not text:
        text = str(annotation)
    head = text.split("[", 1)[0].split(".")[-1]
    return head in _CONTEXT_TYPES
