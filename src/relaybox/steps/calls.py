"""Stable step ids for the model requests and tool calls of one agent run.

A framework gives each tool call an id, but that id is chosen per model response (random, or
counted per process), so a resumed run that asks the model again gets new ids, and a step keyed
by them runs the side effect a second time. relaybox keys them by *where* they happen instead:

=====================================  ========================================
the n-th model request of turn ``T``   ``T:m<n>:model``
the call at position ``p`` (0-based)   ``T:m<n>:c<p>:<tool name>``
of that request's response
=====================================  ========================================

``T`` is the turn key (the inbound message's correlation id, or the turn's id). Model
requests of one run are sequential, so ``n`` counts them in the order the agent makes them;
with the responses journaled as steps (``T:m<n>:model``), a resumed run is handed the same
responses in the same order, so every call lands on the same position and the same step.

:class:`AgentRun` is that counter for one run; it lives in a context variable so framework
adapters (``relaybox.integrations``) and ``@rb.tool_step`` tools find it without new
parameters. :func:`tool_call` names the step a framework tool call should run as.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from relaybox.steps.errors import InvalidStep

MAX_STEP_ID_CHARS = 512


def model_step_id(turn: str, model_turn: int) -> str:
    """The step id of the ``model_turn``-th model request (1-based) of turn ``turn``."""
    return _checked(f"{_turn(turn)}:m{_count('model_turn', model_turn, 1)}:model")


def tool_step_id(turn: str, model_turn: int, position: int, tool: str) -> str:
    """The step id of the tool call at ``position`` (0-based) of a model response."""
    if not isinstance(tool, str) or not tool.strip():
        raise InvalidStep("a tool call step id needs the tool's name")
    turn_part = _turn(turn)
    request = _count("model_turn", model_turn, 1)
    return _checked(f"{turn_part}:m{request}:c{_count('position', position, 0)}:{tool}")


@dataclass(frozen=True)
class ToolCall:
    """The step a framework tool call runs as (set by an adapter, read by ``@rb.tool_step``)."""

    step_id: str
    resource_id: str
    correlation_id: str | None
    tool: str


@dataclass
class AgentRun:
    """One agent run of a turn: numbers its model requests and places its tool calls.

    ``resource_id`` is the user the turn belongs to (steps are keyed per user), and
    ``correlation_id`` (default: the turn key) ties every step to the inbound message in
    ``relaybox trace``.
    """

    turn: str
    resource_id: str
    correlation_id: str | None = None
    model_requests: int = 0
    _calls: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _turn(self.turn)
        if self.correlation_id is None:
            self.correlation_id = self.turn  # the turn key usually is the correlation id
        if not isinstance(self.resource_id, str) or not self.resource_id.strip():
            raise InvalidStep("an agent run needs the user's resource_id (steps are per user)")

    def next_model_request(self) -> int:
        """Number the next model request (1, 2, ...); call once per request, in order."""
        self.model_requests += 1
        return self.model_requests

    def model_step_id(self, model_turn: int) -> str:
        return model_step_id(self.turn, model_turn)

    def record_calls(self, model_turn: int, call_ids: Sequence[str]) -> None:
        """Remember the tool calls of a model response, in the order the response lists them."""
        for position, call_id in enumerate(call_ids):
            self._calls[call_id] = (model_turn, position)

    def tool_step_id(self, call_id: str, tool: str) -> str:
        """The stable step id of a tool call the framework identifies by ``call_id``."""
        placed = self._calls.get(call_id)
        if placed is None:
            raise InvalidStep(
                f"tool call {call_id!r} ({tool}) is not from a model response relaybox journaled"
                " in this run; wrap the model too (docs/integrations.md), or its id could differ"
                " after a crash and the tool would run twice"
            )
        return tool_step_id(self.turn, placed[0], placed[1], tool)

    def tool_call(self, call_id: str, tool: str) -> ToolCall:
        return ToolCall(
            self.tool_step_id(call_id, tool), self.resource_id, self.correlation_id, tool
        )


_run: ContextVar[AgentRun | None] = ContextVar("relaybox_agent_run", default=None)
_call: ContextVar[ToolCall | None] = ContextVar("relaybox_tool_call", default=None)


class TurnLike(Protocol):
    """What :func:`agent_run` needs of a turn (``async with rb.turn(...) as turn``)."""

    @property
    def key(self) -> str: ...
    @property
    def resource_id(self) -> str: ...
    @property
    def correlation_id(self) -> str: ...


@contextmanager
def agent_run(
    turn: str | TurnLike,
    *,
    resource_id: str | None = None,
    correlation_id: str | None = None,
) -> Iterator[AgentRun]:
    """Run an agent inside this block to give its model requests and tool calls stable steps.

    ``turn`` is a turn (``async with rb.turn(...) as turn``: its key, user and correlation id
    are used) or a turn key string with ``resource_id`` (the user) and optionally
    ``correlation_id`` (default: the key).

    >>> with relaybox.agent_run(turn):                                     # doctest: +SKIP
    ...     result = await agent.run(text)
    """
    if isinstance(turn, str):
        if resource_id is None:
            raise InvalidStep("agent_run(key, resource_id=...) needs the user's resource_id")
        run = AgentRun(turn, resource_id, correlation_id)
    else:
        run = AgentRun(
            turn.key, resource_id or turn.resource_id, correlation_id or turn.correlation_id
        )
    token = _run.set(run)
    try:
        yield run
    finally:
        _run.reset(token)


def current_run() -> AgentRun | None:
    """The agent run of this task, or None outside :func:`agent_run`."""
    return _run.get()


@contextmanager
def tool_call(call: ToolCall | None) -> Iterator[ToolCall | None]:
    """Name the step the tool invoked inside this block runs as (for ``@rb.tool_step``)."""
    token = _call.set(call)
    try:
        yield call
    finally:
        _call.reset(token)


def pending_tool_call() -> ToolCall | None:
    """The step an adapter named for the tool call being invoked, if any."""
    return _call.get()


def _turn(turn: object) -> str:
    if not isinstance(turn, str) or not turn.strip():
        raise InvalidStep("a turn key must be a non-empty string (e.g. the correlation id)")
    return turn


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidStep(f"{name} must be an integer >= {least}, not {value!r}")
    return value


def _checked(step_id: str) -> str:
    if len(step_id) > MAX_STEP_ID_CHARS:
        raise InvalidStep(
            f"step id {step_id[:60]!r}... is {len(step_id)} characters; the limit is"
            f" {MAX_STEP_ID_CHARS} (use a shorter turn key or tool name)"
        )
    return step_id
