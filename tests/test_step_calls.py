"""The step pieces agent frameworks need: current_step(), the tool-call step-id rule,
@rb.tool_step as a framework tool (same signature), and control-flow errors that are not
outcomes. Framework adapters are tested in tests/test_integration_*.py."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

import relaybox
from relaybox import StepContext
from relaybox.steps import InvalidStep, StepFailed, model_step_id, tool_step_id
from relaybox.steps.calls import AgentRun, ToolCall, tool_call
from relaybox.steps.inspect import step_events_for_correlation


@pytest.fixture
async def rb(store_url: str) -> AsyncIterator[relaybox.Relaybox]:
    handle = relaybox.open(store_url)
    yield handle
    handle.close()


async def test_current_step_is_the_running_step_and_only_inside_it(rb: relaybox.Relaybox) -> None:
    with pytest.raises(relaybox.NoCurrentStep):
        relaybox.current_step()

    async def body(step: StepContext) -> dict[str, str]:
        await asyncio.sleep(0)
        current = relaybox.current_step()
        assert current is step
        return {"key": current.key, "step": current.step_id}

    results = await asyncio.gather(
        *(
            rb.step(f"s-{n}", relaybox.Intent("t", {"n": n}), body, resource_id="alice")
            for n in range(3)
        )
    )
    assert [r.value["step"] for r in results] == ["s-0", "s-1", "s-2"]  # each task its own
    assert len({r.value["key"] for r in results}) == 3
    with pytest.raises(relaybox.NoCurrentStep):
        relaybox.current_step()


def test_the_step_id_rule_is_turn_model_request_and_position() -> None:
    assert model_step_id("corr-9", 2) == "corr-9:m2:model"
    assert tool_step_id("corr-9", 2, 0, "book") == "corr-9:m2:c0:book"
    run = AgentRun("corr-9", "alice")
    assert run.correlation_id == "corr-9"
    first, second = run.next_model_request(), run.next_model_request()
    assert (first, second) == (1, 2)
    # Random per-response ids map to positions: a resumed run with other ids, same steps.
    run.record_calls(2, ["call_x7", "call_q1"])
    assert run.tool_step_id("call_q1", "charge") == "corr-9:m2:c1:charge"
    with pytest.raises(InvalidStep, match="not from a model response relaybox journaled"):
        run.tool_step_id("call_unknown", "charge")
    for bad in (lambda: model_step_id("", 1), lambda: tool_step_id("t", 0, 0, "x")):
        with pytest.raises(InvalidStep):
            bad()
    with pytest.raises(InvalidStep, match="resource_id"):
        AgentRun("corr-9", "")
    with pytest.raises(InvalidStep, match="limit is 512"):
        model_step_id("x" * 600, 1)


async def test_tool_step_keeps_the_signature_and_takes_its_step_from_an_adapter(
    rb: relaybox.Relaybox,
) -> None:
    effects: list[str] = []

    async def original(people: int, at: str = "19:30") -> dict[str, Any]:
        """Book a table."""
        return {}

    @rb.tool_step("book")
    async def book(people: int, at: str = "19:30") -> dict[str, Any]:
        """Book a table."""
        effects.append(relaybox.current_step().key)
        return {"people": people, "at": at}

    @rb.tool_step("book_old_style")
    async def old_style(step: StepContext, *, people: int) -> str:
        effects.append(step.key)
        return step.step_id

    assert inspect.signature(book) == inspect.signature(original)
    assert book.__name__ == "book" and book.__doc__ == "Book a table."
    assert book.__annotations__ == original.__annotations__
    assert inspect.iscoroutinefunction(book)
    assert list(inspect.signature(old_style).parameters) == ["people"]
    assert "step" not in old_style.__annotations__
    assert book.intent(2).hash == book.intent(people=2).hash  # positional or keyword alike

    with pytest.raises(InvalidStep, match="needs its step"):
        await book(2)
    call = ToolCall("corr-1:m1:c0:book", "alice", "corr-1", "book")
    with tool_call(call):
        assert await book(2) == {"people": 2, "at": "19:30"}
        assert await book(people=2) == {"people": 2, "at": "19:30"}  # same step, replayed
    assert len(effects) == 1
    events = await rb.store.read(step_events_for_correlation("corr-1"))
    assert {e.step_id for e in events} == {"corr-1:m1:c0:book"}
    # The explicit form still works, for both styles.
    assert await old_style(step_id="s-old", resource_id="bob", people=3) == "s-old"
    with pytest.raises(InvalidStep, match="unexpected keyword"):
        await book(2, seats=4)


async def test_control_flow_errors_leave_the_step_open_other_errors_are_outcomes(
    rb: relaybox.Relaybox,
) -> None:
    class AskAgain(Exception):
        pass

    runs = 0

    async def body(step: StepContext) -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise AskAgain("try other arguments")
        if runs == 2:
            raise LookupError("no such table")
        return "unreachable"

    intent = relaybox.Intent("book", {"people": 2})
    with pytest.raises(AskAgain):
        await rb.step("s-1", intent, body, resource_id="alice", not_outcomes=(AskAgain,))
    with pytest.raises(StepFailed, match="no such table"):
        await rb.step("s-1", intent, body, resource_id="alice", not_outcomes=(AskAgain,))
    with pytest.raises(StepFailed, match="no such table"):  # stored, replayed
        await rb.step("s-1", intent, body, resource_id="alice", not_outcomes=(AskAgain,))
    assert runs == 2
    failures = await rb.failures(relaybox.FailureFilter(queue="steps"))
    assert [f.error_type for f in failures] == ["LookupError"]  # AskAgain was not audited


def test_import_relaybox_does_not_import_any_framework() -> None:
    code = (
        "import sys, relaybox, relaybox.integrations;"
        "print(sorted(m for m in ('pydantic_ai', 'agents', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
