"""pydantic-ai: model requests and tool calls of an agent run become relaybox steps.

Built on pydantic-ai's public durable-execution extension point (``pydantic_ai.durable_exec``),
the one its Temporal, DBOS and Prefect integrations use: :class:`RelayboxDurability` is a
``BaseDurabilityCapability``; pydantic-ai hands each model request and each tool call to our
backend as one durable operation, and the backend runs it as a relaybox step:

* a **model request** is the step ``<turn>:m<n>:model``: its response is stored (as
  pydantic-ai's own JSON form of ``ModelResponse``) before the agent sees it, so a resumed
  run gets the same response without calling (or paying) the model, and makes the same tool
  calls. The step is retry-safe (a crash during the request asks again) and a model error is
  not stored (the next run asks again).
* a **tool call** is the step ``<turn>:m<n>:c<position>:<tool>`` (``relaybox.steps.calls``): the
  position in the journaled response, not pydantic-ai's tool-call id, names it. Its outcome,
  an exception included, is stored and replayed; ``ModelRetry``, ``CallDeferred``,
  ``ApprovalRequired`` and argument validation errors are not outcomes (the model is asked
  again, so the step stays open). The tool reads its idempotency key from
  ``relaybox.current_step().key``. A tool decorated with ``@rb.tool_step`` runs as its own step
  (with its own policy) under the same id.

Everything else (tool discovery, argument validation, event handlers) runs in the process
as usual: it has no side effect. Runs outside :func:`relaybox.agent_run` are not touched.

    durability = RelayboxDurability(rb)
    agent = Agent(model, name="concierge", tools=[book_table], capabilities=[durability])
    with relaybox.agent_run(got.correlation_id, resource_id=sender,
                            correlation_id=got.correlation_id):
        result = await agent.run(text)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    BoundDurableOperation,
    DurabilityEngineSpec,
    DurableOperation,
    DurableOperationBackend,
    DynamicToolsetCallToolParams,
    ModelRequestId,
    ModelRequestParams,
    ToolsetCallToolId,
    ToolsetCallToolParams,
    durable_unit_scope,
    record_durable_unit,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.tools import RunContext

from relaybox.client import Relaybox
from relaybox.memory.history import Entry, History
from relaybox.steps import Intent, InvalidStep, StepContext, StepPolicy
from relaybox.steps.calls import AgentRun, current_run, tool_call

# Tool results pydantic-ai records as values that steer the run instead of reporting what the
# tool did: none of them is stored as the step's outcome.
NOT_OUTCOMES = frozenset(
    {"model_retry", "validation_error", "call_deferred", "approval_required", "run_cancelled"}
)
_POLICY_KEYS = frozenset({"retry_safe", "timeout"})


class RelayboxDurability(BaseDurabilityCapability[Any]):
    """A pydantic-ai capability: the agent's model requests and tool calls run as steps.

    ``retry_safe`` / ``tool_timeout`` are the defaults for tool steps; a tool overrides them
    with ``metadata={"relaybox": {"retry_safe": True, "timeout": 20}}`` or opts out of its
    step (a pure tool) with ``metadata={"relaybox": False}``. Function toolsets passed to
    ``agent.run(toolsets=...)`` are refused inside a relaybox run, as they would bypass it.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="relaybox",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="agent run",
        codec=JSON_CODEC,
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",
            "dynamic": "enter-never",
        },
        journal_discovery=False,
        sequential_tools_in_durable_context=False,
        tool_config_key="relaybox",
    )

    def __init__(
        self,
        rb: Relaybox,
        *,
        name: str | None = None,
        models: Mapping[str, Model] | None = None,
        retry_safe: bool = False,
        tool_timeout: float | None = None,
    ) -> None:
        super().__init__(models=models, name=name)
        self.rb = rb
        self.tool_policy = StepPolicy(retry_safe=retry_safe, timeout=tool_timeout)

    @property
    def in_durable_context(self) -> bool:
        return current_run() is not None

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        return _StepBackend(self)

    def tool_config(self, tool: object | None, tool_name: str) -> Any | Literal[False]:
        """A tool's ``metadata={"relaybox": ...}`` (False: no step), as pydantic-ai resolves it."""
        return self._build_resolve_tool_config(None)(tool, tool_name)  # type: ignore[arg-type]

    def policy_for(self, config: object) -> StepPolicy:
        """The tool step policy: the capability's defaults, overridden by tool metadata."""
        if config is None or config is True:
            return self.tool_policy
        if not isinstance(config, Mapping) or not set(config) <= _POLICY_KEYS:
            raise InvalidStep(
                f"tool metadata 'relaybox' must be False or a dict with {sorted(_POLICY_KEYS)},"
                f" not {config!r}"
            )
        return StepPolicy(
            retry_safe=bool(config.get("retry_safe", self.tool_policy.retry_safe)),
            timeout=config.get("timeout", self.tool_policy.timeout),
        )


class _StepBackend(DurableOperationBackend[Any]):
    """Binds pydantic-ai's durable operations to relaybox steps."""

    def __init__(self, capability: RelayboxDurability) -> None:
        self._capability = capability

    def bind(
        self, operation: DurableOperation[Any, Any, Any]
    ) -> BoundDurableOperation[Any, Any, Any]:
        return _StepOperation(operation, self._capability)

    def config_for_tool(
        self, operation: DurableOperation[Any, Any, Any], *, tool: object | None, tool_name: str
    ) -> Any | Literal[False]:
        return self._capability.tool_config(tool, tool_name)

    def registrations(self) -> tuple[()]:
        return ()


class _NotAnOutcome(Exception):
    """Carries a control-flow tool result out of the step body without storing it."""

    def __init__(self, payload: object) -> None:
        super().__init__("the tool asked the model to try again")
        self.payload = payload


class _StepOperation(BoundDurableOperation[Any, Any, Any]):
    def __init__(
        self, operation: DurableOperation[Any, Any, Any], capability: RelayboxDurability
    ) -> None:
        self._operation = operation
        self._capability = capability

    @property
    def operation(self) -> DurableOperation[Any, Any, Any]:
        return self._operation

    async def __call__(self, params: Any, *, config: object | None = None) -> Any:
        run = current_run()
        operation_id = self._operation.operation_id
        if run is not None and isinstance(operation_id, ModelRequestId):
            return await self._model_request(params, run, operation_id)
        if run is not None and isinstance(operation_id, ToolsetCallToolId):
            return await self._tool_call(params, run, config)
        with durable_unit_scope():  # discovery, validation, events: no side effect to keep
            return await self._operation.handler(params)

    async def _model_request(
        self, params: ModelRequestParams, run: AgentRun, operation_id: ModelRequestId
    ) -> Any:
        codec = self._operation.result_codec
        number = run.next_model_request()
        intent = Intent(
            "model_request",
            {"agent": self._capability.name, "request": number},
            model=operation_id.model_name,
        )

        async def body(step: StepContext) -> object:
            with durable_unit_scope():
                return codec.dump(await self._operation.handler(params))

        # Retry-safe: a request cut off by a crash is asked again. Any error is "no answer
        # yet", never an outcome: the next run asks the model again.
        result = await self._capability.rb.step(
            run.model_step_id(number),
            intent,
            body,
            resource_id=run.resource_id,
            correlation_id=run.correlation_id,
            retry_safe=True,
            retryable=(Exception,),
        )
        record_durable_unit(executed=not result.replayed)
        response = codec.load(result.value)
        run.record_calls(number, _call_ids(response))
        return response

    async def _tool_call(
        self,
        params: ToolsetCallToolParams | DynamicToolsetCallToolParams,
        run: AgentRun,
        config: object,
    ) -> Any:
        codec = self._operation.result_codec
        ctx = params.ctx
        call = run.tool_call(ctx.tool_call_id or "", params.name)
        if _is_tool_step(params):
            # @rb.tool_step runs its own step (its own policy) under the id named here.
            with tool_call(call):
                return await self._operation.handler(params)
        policy = self._capability.policy_for(config)

        async def body(step: StepContext) -> object:
            with durable_unit_scope():
                payload = codec.dump(await self._operation.handler(params))
            if isinstance(payload, dict) and payload.get("kind") in NOT_OUTCOMES:
                raise _NotAnOutcome(payload)
            return payload

        try:
            result = await self._capability.rb.step(
                call.step_id,
                Intent(params.name, _model_args(ctx, params.tool_args)),
                body,
                resource_id=call.resource_id,
                correlation_id=call.correlation_id,
                retry_safe=policy.retry_safe,
                timeout=policy.timeout,
                not_outcomes=(_NotAnOutcome,),
            )
        except _NotAnOutcome as signal:
            record_durable_unit(executed=True)
            return codec.load(signal.payload)
        record_durable_unit(executed=not result.replayed)
        return codec.load(result.value)


HISTORY_FORMAT = "pydantic-ai"


def history_entries(messages: Sequence[ModelMessage]) -> list[Entry]:
    """pydantic-ai messages (``result.new_messages()``) as history entries, for
    ``turn.reply(parts, history=history_entries(result.new_messages()))``: stored with the
    reply in one transaction, as pydantic-ai's own JSON form of each message."""
    documents = ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
    return [(str(doc.get("kind", "message")), doc, {"format": HISTORY_FORMAT}) for doc in documents]


async def load_history(history: History, limit: int = 50) -> list[ModelMessage]:
    """The conversation so far as pydantic-ai messages, for ``agent.run(message_history=...)``.

    Reads the latest ``limit`` entries written by :func:`history_entries` (other entries are
    skipped) and starts at a user prompt, so a cut never begins with a tool result whose call
    was cut off.
    """
    entries = await history.recent(limit)
    documents = [
        entry.content
        for entry in entries
        if isinstance(entry.content, dict)
        and (entry.metadata or {}).get("format") == HISTORY_FORMAT
    ]
    messages = ModelMessagesTypeAdapter.validate_python(documents)
    for start, message in enumerate(messages):
        if isinstance(message, ModelRequest) and any(
            isinstance(part, UserPromptPart) for part in message.parts
        ):
            return messages[start:]
    return []


def _call_ids(response: object) -> list[str]:
    message = (
        response if isinstance(response, ModelResponse) else getattr(response, "response", None)
    )
    if not isinstance(message, ModelResponse):
        return []
    return [part.tool_call_id for part in message.parts if isinstance(part, ToolCallPart)]


def _model_args(ctx: RunContext[Any], validated: dict[str, Any]) -> Any:
    """The arguments as the model wrote them (JSON): the intent must not depend on how
    pydantic-ai validated them into Python objects."""
    for message in reversed(ctx.messages):
        if isinstance(message, ModelResponse):
            for part in message.parts:
                if isinstance(part, ToolCallPart) and part.tool_call_id == ctx.tool_call_id:
                    try:
                        return part.args_as_dict()
                    except ValueError:  # not a JSON object: the validated arguments say it
                        return validated
    return validated


def _is_tool_step(params: ToolsetCallToolParams | DynamicToolsetCallToolParams) -> bool:
    tool = getattr(params, "tool", None)
    schema = getattr(getattr(tool, "call_func", None), "__self__", None)
    function = getattr(schema, "function", None)
    return callable(getattr(function, "intent", None)) and hasattr(function, "policy")


__all__ = ["NOT_OUTCOMES", "RelayboxDurability", "history_entries", "load_history"]
