"""OpenAI Agents SDK: journaled model responses, function tools as steps, a relaybox Session.

The SDK has no durable-execution hook like pydantic-ai's, so the adapter wraps its three
public extension points:

* :class:`JournaledModel` is a ``agents.models.interface.Model`` around yours. Each
  ``get_response`` is the step ``<turn>:m<n>:model`` (retry-safe; an error is not stored): a
  resumed run is handed the stored response (same text, same tool calls and call ids) without
  calling or paying the model. It also places each function call of the response, so tools
  get stable step ids (``relaybox.steps.calls``). Streaming (``Runner.run_streamed``) is not
  journaled: it raises :class:`relaybox.steps.InvalidStep`.
* :meth:`RelayboxAgents.function_tool` builds a ``FunctionTool`` exactly as
  ``agents.function_tool`` does (same schema) whose invocation is the step
  ``<turn>:m<n>:c<position>:<tool>``. The stored outcome is returned on replay, errors included.
  Note the SDK's default ``failure_error_function`` turns an exception into the string
  ``"An error occurred while running the tool. Please try again."`` *inside* the tool: that
  string is then the stored (successful) outcome and never reaches the failure audit. Pass
  ``failure_error_function=None`` to keep the exception: it is stored as the step's failed
  outcome, audited, and ``Runner.run`` raises :class:`relaybox.StepFailed`.
* :class:`RelayboxSession` is an ``agents.memory.Session`` on relaybox's scoped history: one
  person in one thread (``Scope``), items stored as structured entries; inside a turn, pass
  ``turn.history`` so a crashed attempt's items are replaced, not repeated.

    rx = RelayboxAgents(rb)
    agent = Agent(name="concierge", model=rx.model(my_model), tools=[rx.function_tool(book)])
    with relaybox.agent_run(got.correlation_id, resource_id=sender):
        result = await Runner.run(agent, text, session=RelayboxSession(history))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agents import FunctionTool, function_tool
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.memory.session import SessionABC
from agents.models.interface import Model, ModelTracing
from agents.tool_context import ToolContext
from openai.types.responses import ResponseFunctionToolCall
from pydantic import TypeAdapter

from relaybox.client import Relaybox
from relaybox.jsonvalue import NotJSON, to_json
from relaybox.memory import InvalidMemory, ScopedMemory
from relaybox.memory.history import History
from relaybox.steps import Intent, InvalidStep, StepContext, StepPolicy
from relaybox.steps.calls import AgentRun, current_run, tool_call

_RESPONSE = TypeAdapter(ModelResponse)
_ALL_ITEMS = 100_000  # "no limit" for Session.get_items(None)


class RelayboxAgents:
    """The adapter for one :class:`relaybox.Relaybox` (its store and step runner)."""

    def __init__(self, rb: Relaybox) -> None:
        self.rb = rb

    def model(self, model: Model, *, name: str | None = None) -> JournaledModel:
        """``model`` with every response journaled as a step of the current agent run."""
        return JournaledModel(self.rb, model, name=name)

    def function_tool(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        retry_safe: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """Like ``agents.function_tool`` (same options, same schema); the call is a step.

        Usable bare (``@rx.function_tool``) or with options
        (``@rx.function_tool(retry_safe=True, failure_error_function=None)``). A function
        decorated with ``@rb.tool_step`` keeps its own step policy.
        """

        def build(function: Callable[..., Any]) -> FunctionTool:
            tool = function_tool(function, **options)
            policy = StepPolicy(retry_safe=retry_safe, timeout=timeout)
            return self.tool(tool, policy=policy, own_step=_is_tool_step(function))

        return build if fn is None else build(fn)

    def tool(
        self, tool: FunctionTool, *, policy: StepPolicy | None = None, own_step: bool = False
    ) -> FunctionTool:
        """An existing ``FunctionTool`` whose invocations run as steps."""
        original = tool.on_invoke_tool
        rb = self.rb
        chosen = policy or StepPolicy()

        async def invoke(context: ToolContext[Any], arguments: str) -> Any:
            run = current_run()
            if run is None:
                return await original(context, arguments)
            call = run.tool_call(context.tool_call_id, tool.name)
            if own_step:
                with tool_call(call):  # @rb.tool_step names its step from this
                    return await original(context, arguments)

            async def body(step: StepContext) -> Any:
                with tool_call(None):
                    result = await original(context, arguments)
                try:
                    return to_json(result, "tool result")
                except NotJSON:
                    return str(result)  # the SDK sends the model str(result) anyway

            result = await rb.step(
                call.step_id,
                Intent(tool.name, _arguments(arguments)),
                body,
                resource_id=call.resource_id,
                correlation_id=call.correlation_id,
                retry_safe=chosen.retry_safe,
                timeout=chosen.timeout,
            )
            return result.value

        return dataclasses.replace(tool, on_invoke_tool=invoke)


class JournaledModel(Model):
    """A ``Model`` whose responses are stored as steps of the current agent run."""

    def __init__(self, rb: Relaybox, model: Model, *, name: str | None = None) -> None:
        self.rb = rb
        self.wrapped = model
        self.name = name or type(model).__name__

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        async def ask() -> ModelResponse:
            return await self.wrapped.get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )

        run = current_run()
        if run is None:
            return await ask()
        return await self._journaled(run, ask)

    async def _journaled(
        self, run: AgentRun, ask: Callable[[], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        number = run.next_model_request()

        async def body(step: StepContext) -> Any:
            return _RESPONSE.dump_python(await ask(), mode="json")

        result = await self.rb.step(
            run.model_step_id(number),
            Intent("model_request", {"request": number}, model=self.name),
            body,
            resource_id=run.resource_id,
            correlation_id=run.correlation_id,
            # A request cut off by a crash is asked again; an error is "no answer yet".
            retry_safe=True,
            retryable=(Exception,),
        )
        response = _RESPONSE.validate_python(result.value)
        calls = [i.call_id for i in response.output if isinstance(i, ResponseFunctionToolCall)]
        run.record_calls(number, calls)
        return response

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> AsyncIterator[TResponseStreamEvent]:
        if current_run() is None:
            return self.wrapped.stream_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
        return _refuse_streaming()

    async def close(self) -> None:
        await self.wrapped.close()


async def _refuse_streaming() -> AsyncIterator[TResponseStreamEvent]:
    raise InvalidStep(
        "relaybox journals model responses of Runner.run, not of Runner.run_streamed: a"
        " streamed response could not be replayed after a crash (docs/integrations.md)"
    )
    yield  # pragma: no cover - makes this an async generator


class RelayboxSession(SessionABC):
    """An Agents SDK ``Session`` on one person's history in one thread.

    Give it ``rb.memory(Scope(sender, f"chat-{chat_id}"))`` (the session id is then
    ``<resource>/<thread>``), or a ``History`` such as ``turn.history`` inside a turn together
    with a ``session_id``. Every item is stored whole as a structured entry, so ``get_items``
    returns what ``add_items`` was given; nothing reaches another person's or another thread's
    history (every query is scoped).
    """

    def __init__(self, memory: ScopedMemory | History, *, session_id: str | None = None) -> None:
        if isinstance(memory, ScopedMemory):
            self.history = memory.history
            scope = memory.scope
            self.session_id = session_id or f"{scope.resource_id}/{scope.thread_id}"
        elif isinstance(memory, History) and session_id:
            self.history = memory
            self.session_id = session_id
        else:
            raise InvalidMemory(
                "RelayboxSession takes rb.memory(scope), or a History and a session_id"
            )
        self.session_settings = None

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        entries = await self.history.recent(_ALL_ITEMS if limit is None else limit)
        return [_item(entry.role, entry.content) for entry in entries]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        await self.history.extend((_role(item), dict(item)) for item in items)

    async def pop_item(self) -> TResponseInputItem | None:
        entry = await self.history.pop()
        return None if entry is None else _item(entry.role, entry.content)

    async def clear_session(self) -> None:
        await self.history.clear()


def _role(item: Any) -> str:
    role = item.get("role") or item.get("type") or "item"
    return str(role)[:64]


def _item(role: str, content: Any) -> Any:
    if isinstance(content, dict):
        return content
    return {"role": role, "content": content}  # a text entry written outside the Session


def _arguments(arguments: str) -> Any:
    """The intent's args: the model's JSON arguments (their key order does not matter)."""
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return arguments  # the SDK reports the bad JSON to the model; the text is the intent


def _is_tool_step(function: Callable[..., Any]) -> bool:
    return callable(getattr(function, "intent", None)) and hasattr(function, "policy")


__all__ = ["JournaledModel", "RelayboxAgents", "RelayboxSession"]
