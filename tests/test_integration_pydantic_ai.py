"""pydantic-ai through relaybox: model requests and tool calls are steps (docs/integrations.md).

Offline: FunctionModel plays the model. The crash test runs the agent in a real process,
SIGKILLs it after the card was charged, runs it again and counts charges and replies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import Tool
from pydantic_ai.toolsets import FunctionToolset

import relaybox
from relaybox.config import parse_config
from relaybox.integrations.pydantic_ai import RelayboxDurability
from relaybox.steps import InvalidStep, StepFailed
from relaybox.steps.inspect import step_events_for_correlation

AGENT_PROCESS = Path(__file__).with_name("_pydantic_ai_agent.py")


@pytest.fixture
async def rb(store_url: str) -> AsyncIterator[relaybox.Relaybox]:
    config = parse_config({"channels": {"mem": {"transport": "memory"}}})
    handle = relaybox.open(store_url, config=config)
    yield handle
    handle.close()


class Script:
    """A FunctionModel that calls `tool` with each of `calls` in one response, then answers
    with the tool results; counts how often it was asked."""

    def __init__(self, tool: str, *calls: dict[str, Any]) -> None:
        self.tool = tool
        self.calls = calls
        self.requests = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.requests += 1
        last = messages[-1].parts
        returns = [p for p in last if isinstance(p, ToolReturnPart)]
        results = [p.content for p in returns if p.outcome != "retried"]
        retries = [p for p in returns if p.outcome == "retried"]
        if retries:  # the tool said "try again": ask with the amount it suggested
            return ModelResponse(parts=[ToolCallPart(self.tool, {"amount": 100})])
        if results:
            return ModelResponse(parts=[TextPart(f"done: {results}")])
        return ModelResponse(parts=[ToolCallPart(self.tool, args) for args in self.calls])


async def test_model_responses_and_tool_calls_are_steps_a_second_run_replays(
    rb: relaybox.Relaybox,
) -> None:
    charged: list[tuple[str, int]] = []

    async def charge(ctx: RunContext[None], amount: int) -> str:
        """Charge the card."""
        charged.append((relaybox.current_step().key, amount))
        return f"ch_{len(charged)}"

    script = Script("charge", {"amount": 1200}, {"amount": 5})
    agent = Agent(
        FunctionModel(script), name="bot", tools=[charge], capabilities=[RelayboxDurability(rb)]
    )
    outputs = []
    for _ in range(2):
        with relaybox.agent_run("corr-1", resource_id="alice", correlation_id="corr-1"):
            outputs.append((await agent.run("charge me")).output)
    assert outputs[0] == outputs[1] == "done: ['ch_1', 'ch_2']"
    assert script.requests == 2  # the second run asked the model nothing
    assert [amount for _key, amount in charged] == [1200, 5]  # and charged nothing
    assert len({key for key, _amount in charged}) == 2  # one idempotency key per call
    events = await rb.store.read(step_events_for_correlation("corr-1"))
    steps = {(e.step_id, e.event) for e in events}
    assert {
        ("corr-1:m1:model", "succeeded"),
        ("corr-1:m1:c0:charge", "succeeded"),
        ("corr-1:m1:c1:charge", "succeeded"),
        ("corr-1:m2:model", "succeeded"),
        ("corr-1:m1:c0:charge", "replayed"),
        ("corr-1:m2:model", "replayed"),
    } <= steps


async def test_steps_are_per_user_and_runs_outside_agent_run_are_untouched(
    rb: relaybox.Relaybox,
) -> None:
    keys: list[str] = []

    async def book(ctx: RunContext[None], amount: int) -> str:
        keys.append(relaybox.current_step().key)
        return "ok"

    script = Script("book", {"amount": 2})
    agent = Agent(
        FunctionModel(script), name="bot", tools=[book], capabilities=[RelayboxDurability(rb)]
    )
    for user in ("alice", "bob"):
        with relaybox.agent_run("same-turn", resource_id=user):
            await agent.run("book")
    assert script.requests == 4 and len(set(keys)) == 2  # nothing shared between users

    async def plain(ctx: RunContext[None], amount: int) -> str:
        with pytest.raises(relaybox.NoCurrentStep):
            relaybox.current_step()
        return "plain"

    other = Agent(
        FunctionModel(Script("plain", {"amount": 1})),
        name="plain",
        tools=[plain],
        capabilities=[RelayboxDurability(rb)],
    )
    assert (await other.run("hi")).output == "done: ['plain']"  # no agent_run: no steps


async def test_a_tool_error_is_stored_and_replayed_without_running_the_tool_again(
    rb: relaybox.Relaybox,
) -> None:
    attempts = 0

    async def charge(ctx: RunContext[None], amount: int) -> str:
        nonlocal attempts
        attempts += 1
        raise ValueError("card declined")

    agent = Agent(
        FunctionModel(Script("charge", {"amount": 1200})),
        name="bot",
        tools=[charge],
        capabilities=[RelayboxDurability(rb)],
    )
    for replayed in (False, True):
        with relaybox.agent_run("corr-e", resource_id="alice"), pytest.raises(StepFailed) as error:
            await agent.run("charge me")
        assert error.value.replayed is replayed
        assert error.value.error_type == "ValueError"
        assert error.value.error_message == "card declined"
    assert attempts == 1


async def test_model_retry_is_not_an_outcome_and_the_model_is_asked_again(
    rb: relaybox.Relaybox,
) -> None:
    seen: list[int] = []

    async def charge(ctx: RunContext[None], amount: int) -> str:
        seen.append(amount)
        if amount > 1000:
            raise ModelRetry("amounts over 1000 need approval; charge 100")
        return f"charged {amount}"

    agent = Agent(
        FunctionModel(Script("charge", {"amount": 5000})),
        name="bot",
        tools=[charge],
        capabilities=[RelayboxDurability(rb)],
    )
    with relaybox.agent_run("corr-r", resource_id="alice"):
        result = await agent.run("charge me")
    assert result.output == "done: ['charged 100']"
    assert seen == [5000, 100]
    events = await rb.store.read(step_events_for_correlation("corr-r"))
    first = [e.event for e in events if e.step_id == "corr-r:m1:c0:charge"]
    assert first == ["started", "not_an_outcome"]  # open, not failed, not audited
    assert await rb.failures(relaybox.FailureFilter(queue="steps")) == []
    with relaybox.agent_run("corr-r", resource_id="alice"):
        again = await agent.run("charge me")
    # The open step runs again (it did nothing the first time) and asks for a retry again;
    # the call that charged is replayed.
    assert again.output == result.output and seen == [5000, 100, 5000]


async def test_a_model_error_is_not_stored_the_next_run_asks_again(
    rb: relaybox.Relaybox,
) -> None:
    asked = 0

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal asked
        asked += 1
        if asked == 1:
            raise ConnectionError("provider unreachable")
        return ModelResponse(parts=[TextPart("hello")])

    agent = Agent(FunctionModel(flaky), name="bot", capabilities=[RelayboxDurability(rb)])
    with relaybox.agent_run("corr-m", resource_id="alice"), pytest.raises(ConnectionError):
        await agent.run("hi")
    with relaybox.agent_run("corr-m", resource_id="alice"):
        assert (await agent.run("hi")).output == "hello"
    assert asked == 2


async def test_tool_metadata_opts_a_pure_tool_out_and_bad_metadata_is_refused(
    rb: relaybox.Relaybox,
) -> None:
    async def lookup(ctx: RunContext[None], amount: int) -> str:
        with pytest.raises(relaybox.NoCurrentStep):  # no step: a pure tool runs as is
            relaybox.current_step()
        return "pure"

    pure = Agent(
        FunctionModel(Script("lookup", {"amount": 1})),
        name="bot",
        tools=[Tool(lookup, metadata={"relaybox": False})],
        capabilities=[RelayboxDurability(rb)],
    )
    with relaybox.agent_run("corr-p", resource_id="alice"):
        assert (await pure.run("hi")).output == "done: ['pure']"
    events = await rb.store.read(step_events_for_correlation("corr-p"))
    assert {e.step_id for e in events} == {"corr-p:m1:model", "corr-p:m2:model"}

    bad = Agent(
        FunctionModel(Script("lookup", {"amount": 1})),
        name="bad",
        tools=[Tool(lookup, metadata={"relaybox": {"retry_sfae": True}})],
        capabilities=[RelayboxDurability(rb)],
    )
    with relaybox.agent_run("corr-b", resource_id="alice"), pytest.raises(InvalidStep) as error:
        await bad.run("hi")
    assert "retry_sfae" in str(error.value)

    # A toolset handed to one run would bypass the steps: refused inside an agent run.
    with relaybox.agent_run("corr-x", resource_id="alice"), pytest.raises(UserError):
        await pure.run("hi", toolsets=[FunctionToolset([lookup], id="extra")])


async def test_a_streamed_request_is_journaled_too(rb: relaybox.Relaybox) -> None:
    asked = 0

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        nonlocal asked
        asked += 1
        yield "hello "
        yield "world"

    agent = Agent(
        FunctionModel(stream_function=stream), name="bot", capabilities=[RelayboxDurability(rb)]
    )
    for _ in range(2):
        with relaybox.agent_run("corr-s", resource_id="alice"):
            async with agent.run_stream("hi") as result:
                assert await result.get_output() == "hello world"
    assert asked == 1


async def test_an_rb_tool_step_is_a_pydantic_ai_tool_with_its_own_policy(
    rb: relaybox.Relaybox,
) -> None:
    ran: list[str] = []

    async def undecorated(ctx: RunContext[None], people: int, at: str) -> str:
        """Book a table.

        Args:
            people: how many guests
            at: the time, HH:MM
        """
        return ""

    @rb.tool_step("book", retry_safe=True)
    async def book(ctx: RunContext[None], people: int, at: str) -> str:
        """Book a table.

        Args:
            people: how many guests
            at: the time, HH:MM
        """
        step = relaybox.current_step()
        ran.append(step.step_id)
        assert step.intent.args == {"people": people, "at": at}  # ctx is not in the intent
        return f"B-{people}@{at}"

    assert Tool(book).function_schema.json_schema == Tool(undecorated).function_schema.json_schema
    assert book.__name__ == "book" and book.__doc__ == undecorated.__doc__

    model = TestModel(call_tools=["book"])
    agent = Agent(model, name="bot", tools=[book], capabilities=[RelayboxDurability(rb)])
    for _ in range(2):
        with relaybox.agent_run("corr-t", resource_id="alice"):
            result = await agent.run("book")
    assert ran == ["corr-t:m1:c0:book"]  # its own step, named by position, run once
    assert "B-" in result.output


def _spawn(url: str, workdir: Path, kill_at: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(AGENT_PROCESS), url, str(workdir), kill_at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, child: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if child.poll() is not None:
            raise AssertionError(f"agent process ended early: {child.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"agent process did not reach {path.name}")
        time.sleep(0.02)


@pytest.mark.parametrize("kill_at", ["in_tool", "next_model"])
async def test_sigkill_after_the_card_was_charged_then_rerun_charges_once_replies_once(
    store_url: str, tmp_path: Path, kill_at: str
) -> None:
    first = _spawn(store_url, tmp_path, kill_at)
    try:
        _wait_for(tmp_path / "reached", first)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert len((tmp_path / "card").read_text().splitlines()) == 1

    second = _spawn(store_url, tmp_path, "")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert json.loads(out)["output"] == "Paid 12.00 EUR."
    assert json.loads(out)["outcome"] == "retry"  # the killed attempt's turn, run again

    card = (tmp_path / "card").read_text().splitlines()
    assert len(card) == 1  # charged once
    attempts = (tmp_path / "attempts").read_text().splitlines()
    models = (tmp_path / "model_calls").read_text().splitlines()
    if kill_at == "next_model":
        assert len(attempts) == 1  # the stored outcome was replayed: the tool did not run
        assert models.count(str(second.pid)) == 1  # only the request that never answered
    else:
        assert len(attempts) == 2  # retry-safe: run again with the same key, deduped
        assert models.count(str(second.pid)) == 1  # the first response was replayed

    config = parse_config({"channels": {"mem": {"transport": "memory"}}})
    rb = relaybox.open(store_url, config=config)
    try:
        deliveries = await rb.deliveries(thread_id="chat-1")
        assert len(deliveries) == 1  # one reply
        reply = await rb.delivery(deliveries[0].id)
        assert [p.body for p in reply.parts] == ["Paid 12.00 EUR.", "Anything else?"]
        third = _spawn(store_url, tmp_path, "")  # the platform delivers it once more
        out, err = third.communicate(timeout=120)
        assert json.loads(out) == {"outcome": "done"}, err
        assert len(await rb.deliveries(thread_id="chat-1")) == 1
    finally:
        rb.close()
