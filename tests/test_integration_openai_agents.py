"""OpenAI Agents SDK through relaybox (docs/integrations.md): a fake Model implementing the
SDK's model interface (with random call ids, as real providers give), function tools as
steps, and a Session on scoped history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.exceptions import UserError
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.testing import assistant_message, function_call
from agents.usage import Usage

import relaybox
from relaybox import Scope, StepFailed
from relaybox.integrations.openai_agents import RelayboxAgents, RelayboxSession
from relaybox.steps import InvalidStep
from relaybox.steps.inspect import step_events_for_correlation

set_tracing_disabled(True)  # offline: no trace export


class FakeModel(Model):
    """Calls `tool` once per args in `calls`, then answers with the tool outputs it was given
    since the last user message (or echoes that message). Call ids are random per response."""

    def __init__(self, tool: str = "", *calls: dict[str, Any]) -> None:
        self.tool = tool
        self.calls = calls
        self.requests = 0
        self.inputs: list[list[Any]] = []

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> Any:
        self.requests += 1
        items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        self.inputs.append(items)
        last_user = max(i for i, item in enumerate(items) if item.get("role") == "user")
        recent = items[last_user:]
        outputs = [item["output"] for item in recent if item.get("type") == "function_call_output"]
        if outputs or not self.calls:
            text = f"done: {outputs}" if outputs else f"echo: {recent[0]['content']}"
            return ModelResponse(output=[assistant_message(text)], usage=Usage(), response_id=None)
        output = [
            function_call(self.tool, args, call_id=f"call_{uuid.uuid4().hex[:8]}")
            for args in self.calls
        ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kw: Any) -> Any:
        raise NotImplementedError


@pytest.fixture
async def rb(store_url: str) -> AsyncIterator[relaybox.Relaybox]:
    handle = relaybox.open(store_url)
    yield handle
    handle.close()


async def test_function_tools_and_model_responses_are_steps_a_second_run_replays(
    rb: relaybox.Relaybox,
) -> None:
    rx = RelayboxAgents(rb)
    booked: list[tuple[str, int]] = []

    @rx.function_tool(retry_safe=True)
    async def book(people: int) -> str:
        """Book a table."""
        booked.append((relaybox.current_step().key, people))
        return f"B-{len(booked)}"

    model = FakeModel("book", {"people": 2}, {"people": 4})
    agent = Agent(name="concierge", model=rx.model(model), tools=[book])
    outputs = []
    for _ in range(2):
        with relaybox.agent_run("corr-a", resource_id="alice"):
            outputs.append((await Runner.run(agent, "book twice")).final_output)
    assert outputs[0] == outputs[1] == "done: ['B-1', 'B-2']"
    assert model.requests == 2 and [p for _k, p in booked] == [2, 4]
    events = await rb.store.read(step_events_for_correlation("corr-a"))
    assert {"corr-a:m1:model", "corr-a:m1:c0:book", "corr-a:m1:c1:book", "corr-a:m2:model"} == {
        e.step_id for e in events
    }
    assert sum(e.event == "replayed" for e in events) == 4

    # Another user, same turn key: their own steps.
    with relaybox.agent_run("corr-a", resource_id="bob"):
        await Runner.run(agent, "book twice")
    assert len(booked) == 4 and len({key for key, _p in booked}) == 4

    # Streaming cannot be journaled: refused inside a run, not silently unjournaled.
    with relaybox.agent_run("corr-s", resource_id="alice"), pytest.raises(InvalidStep):
        streamed = Runner.run_streamed(agent, "hi")
        async for _event in streamed.stream_events():
            pass


async def test_a_model_error_is_not_stored_the_next_run_asks_again(
    rb: relaybox.Relaybox,
) -> None:
    class Flaky(FakeModel):
        async def get_response(self, *args: Any, **kw: Any) -> Any:
            if self.requests == 0:
                self.requests += 1
                raise ConnectionError("provider unreachable")
            return await super().get_response(*args, **kw)

    rx = RelayboxAgents(rb)
    model = Flaky()
    agent = Agent(name="a", model=rx.model(model))
    with relaybox.agent_run("corr-m", resource_id="alice"), pytest.raises(ConnectionError):
        await Runner.run(agent, "hi")
    with relaybox.agent_run("corr-m", resource_id="alice"):
        assert (await Runner.run(agent, "hi")).final_output == "echo: hi"
    assert model.requests == 2


async def test_tool_errors_default_string_is_the_outcome_none_keeps_the_exception(
    rb: relaybox.Relaybox,
) -> None:
    rx = RelayboxAgents(rb)
    tries = {"default": 0, "kept": 0}

    @rx.function_tool
    async def default(people: int) -> str:
        tries["default"] += 1
        raise LookupError("no table")

    @rx.function_tool(failure_error_function=None)
    async def kept(people: int) -> str:
        tries["kept"] += 1
        raise LookupError("no table")

    for _ in range(2):
        with relaybox.agent_run("corr-d", resource_id="alice"):
            agent = Agent(name="a", model=rx.model(FakeModel("default", {"people": 2})))
            agent.tools = [default]
            result = await Runner.run(agent, "book")
        assert "An error occurred while running the tool" in result.final_output
    for replayed in (False, True):
        with relaybox.agent_run("corr-k", resource_id="alice"), pytest.raises(UserError) as err:
            agent = Agent(name="a", model=rx.model(FakeModel("kept", {"people": 2})), tools=[kept])
            await Runner.run(agent, "book")
        stored = err.value.__cause__  # the SDK wraps a tool's exception in UserError
        assert isinstance(stored, StepFailed)
        assert stored.replayed is replayed and stored.error_type == "LookupError"
    assert tries == {"default": 1, "kept": 1}
    audited = await rb.failures(relaybox.FailureFilter(queue="steps"))
    assert [f.job_id for f in audited] == ["corr-k:m1:c0:kept"]  # the string hid the other


async def test_an_rb_tool_step_is_an_agents_sdk_tool_with_the_same_schema(
    rb: relaybox.Relaybox,
) -> None:
    rx = RelayboxAgents(rb)
    ran: list[str] = []

    async def plain(people: int, at: str) -> str:
        """Book a table.

        Args:
            people: how many guests
            at: the time, HH:MM
        """
        return ""

    @rb.tool_step("book", retry_safe=True)
    async def book(people: int, at: str) -> str:
        """Book a table.

        Args:
            people: how many guests
            at: the time, HH:MM
        """
        ran.append(relaybox.current_step().step_id)
        return f"B-{people}@{at}"

    tool = rx.function_tool(book)
    untitled = {k: v for k, v in tool.params_json_schema.items() if k != "title"}
    expected = function_tool(plain).params_json_schema
    assert untitled == {k: v for k, v in expected.items() if k != "title"}
    assert tool.params_json_schema["title"] == "book_args" and tool.name == "book"
    assert tool.description == function_tool(plain).description
    model = FakeModel("book", {"people": 2, "at": "19:30"})
    agent = Agent(name="a", model=rx.model(model), tools=[tool])
    for _ in range(2):
        with relaybox.agent_run("corr-t", resource_id="alice"):
            result = await Runner.run(agent, "book")
    assert result.final_output == "done: ['B-2@19:30']"
    assert ran == ["corr-t:m1:c0:book"]


async def test_the_session_is_scoped_history_per_person_and_thread(rb: relaybox.Relaybox) -> None:
    alice = RelayboxSession(rb.memory(Scope("alice", "chat-1")))
    bob = RelayboxSession(rb.memory(Scope("bob", "chat-1")))
    alice_other_chat = RelayboxSession(rb.memory(Scope("alice", "chat-2")))
    assert alice.session_id == "alice/chat-1"

    model = FakeModel()
    agent = Agent(name="a", model=model)
    await Runner.run(agent, "I am Alice", session=alice)
    await Runner.run(agent, "I am Bob", session=bob)
    await Runner.run(agent, "second message", session=alice)
    seen = [item.get("content") for item in model.inputs[-1] if item.get("role") == "user"]
    assert seen == ["I am Alice", "second message"]  # Alice's history, never Bob's

    items = await alice.get_items()
    assert [i["role"] for i in items] == ["user", "assistant", "user", "assistant"]
    assert await alice.get_items(limit=1) == items[-1:]
    assert await alice_other_chat.get_items() == []
    assert await alice.pop_item() == items[-1]
    assert len(await alice.get_items()) == 3
    await alice.clear_session()
    assert await alice.get_items() == [] and await alice.pop_item() is None
    assert len(await bob.get_items()) == 2  # clearing Alice's chat left Bob's alone


async def test_the_fifteen_line_turn_survives_a_crash_mid_tool(store_url: str) -> None:
    """docs/integrations.md's Agents SDK version: a turn whose run is cut off right after the
    tool's side effect (the task cancelled, as on shutdown) is run again on redelivery: the
    model's first answer is replayed, the tool runs again under the same key (the API dedupes),
    one reply, and the session holds the exchange once."""
    from relaybox.config import parse_config

    config = parse_config(
        {
            "channels": {"sms": {"transport": "memory"}},
            "turns": {"lease_seconds": 0.5, "retry_delay_seconds": 0.01},
            "steps": {"lease_seconds": 0.5, "poll_interval_seconds": 0.02},
        }
    )
    rb = relaybox.open(store_url, config=config)
    rx = RelayboxAgents(rb)
    bookings: dict[str, str] = {}  # the restaurant: one booking per idempotency key
    cut_off = True
    booked = asyncio.Event()

    @rx.function_tool(retry_safe=True)
    async def book_table(people: int) -> str:
        """Book a table."""
        key = relaybox.current_step().key
        booking = bookings.setdefault(key, f"R-{len(bookings) + 1}")
        if cut_off:
            booked.set()
            await asyncio.Event().wait()  # the run is cut off here, after the booking
        return booking

    model = FakeModel("book_table", {"people": 2})
    agent = Agent(name="concierge", model=rx.model(model), tools=[book_table])

    async def on_webhook() -> str:
        async with rb.turn(
            channel="sms",
            external_id="m-1",
            thread_id="chat-1",
            resource_id="alice",
            text="table for 2",
        ) as turn:
            if not turn.should_run:
                return str(turn.outcome)
            with relaybox.agent_run(turn):
                result = await Runner.run(
                    agent, "table for 2", session=RelayboxSession(turn.memory)
                )
            await turn.reply([result.final_output])
            return str(turn.outcome)

    try:
        first = asyncio.create_task(on_webhook())
        await booked.wait()
        first.cancel()  # shutdown mid-tool: the step and the turn are released as interrupted
        with pytest.raises(asyncio.CancelledError):
            await first
        cut_off = False
        outcome = "in_progress"
        for _ in range(200):  # the platform redelivers until the bot runs it
            outcome = await on_webhook()
            if outcome != "in_progress":
                break
            await asyncio.sleep(0.05)
        assert outcome == "retry"
        assert await on_webhook() == "done"
        assert bookings == {next(iter(bookings)): "R-1"}  # one booking
        assert model.requests == 2  # the first answer was replayed: 1 + the final one
        deliveries = await rb.deliveries(thread_id="chat-1")
        assert len(deliveries) == 1
        reply = await rb.delivery(deliveries[0].id)
        assert [p.body for p in reply.parts] == ["done: ['R-1']"]
        items = await RelayboxSession(rb.memory(Scope("alice", "chat-1"))).get_items()
        assert [i.get("role") or i.get("type") for i in items].count("user") == 1
    finally:
        rb.close()
