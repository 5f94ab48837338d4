"""Agent turns (docs/turns.md), on both stores: one durable unit per inbound message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests._outbox_helpers import run_worker_until
from tests._turn_handlers import expire_leases, hang

import relaybox
from relaybox import Scope
from relaybox.audit.query import FailureFilter
from relaybox.config import Config, parse_config
from relaybox.errors import TurnLeaseLost
from relaybox.steps import Intent, StepContext, StepNeedsReconciliation
from relaybox.steps import transitions as step_transitions
from relaybox.steps.records import StepStatus
from relaybox.testing.loopback import LoopbackReceiver
from relaybox.transports.webhook import WebhookTransport
from relaybox.turns import inspect as turns_inspect
from relaybox.turns.api import TurnScope
from relaybox.turns.records import TurnStatus
from relaybox.turns.resume import Resumer
from relaybox.turns.transitions import Outcome

MESSAGE = {"channel": "mem", "thread_id": "chat-1", "resource_id": "alice", "text": "hi"}


def make_config(**turns: Any) -> Config:
    return parse_config(
        {
            "turns": {"lease_seconds": 30, "max_attempts": 3, **turns},
            "steps": {"lease_seconds": 30, "poll_interval_seconds": 0.02},
            "worker": {"lease_seconds": 1.0, "poll_interval_seconds": 0.01},
            "channels": {"mem": {"transport": "memory"}},
        }
    )


@pytest.fixture
async def rb(store_url: str) -> AsyncIterator[relaybox.Relaybox]:
    opened = relaybox.open(store_url, config=make_config())
    yield opened
    opened.close()


def turn(rb: relaybox.Relaybox, external_id: str = "m1") -> TurnScope:
    return rb.turn(external_id=external_id, **MESSAGE)


async def history(rb: relaybox.Relaybox) -> list[tuple[str, Any]]:
    entries = await rb.memory(Scope("alice", "chat-1")).history.recent(50)
    return [(m.role, m.content) for m in entries]


async def bodies(rb: relaybox.Relaybox) -> list[str]:
    """The first part of every reply, oldest first."""
    listed = sorted(await rb.deliveries(), key=lambda d: d.id)
    return [(await rb.delivery(d.id)).parts[0].body for d in listed]


async def crash_inside(rb: relaybox.Relaybox, external_id: str = "m1") -> int:
    """Enter a turn, write history, and die without leaving the block (as after SIGKILL)."""
    scope = turn(rb, external_id)
    entered = await scope.__aenter__()
    assert entered.should_run
    await entered.history.append("user", "hi")
    assert scope._keeper is not None
    scope._keeper.cancel()  # the process is gone: nobody renews the lease
    return entered.id


async def test_a_turn_replies_with_its_history_and_a_redelivery_is_done(
    rb: relaybox.Relaybox,
) -> None:
    async with turn(rb) as first:
        assert first.outcome is Outcome.NEW and first.attempt == 1
        await first.history.append("user", "hi")
        sent = await first.reply(["hello"], history=[("assistant", {"text": "hello"})])
    assert sent.created and sent.delivery.reply_key.endswith(f":turn-{first.id}:reply")
    async with turn(rb) as again:
        assert again.outcome is Outcome.DONE and not again.should_run
        with pytest.raises(relaybox.InvalidState, match=r"check turn\.should_run"):
            await again.reply(["twice"])
    record = await rb.store.read(turns_inspect.get_turn(first.id))
    assert record.status is TurnStatus.ANSWERED and record.reply_delivery_id == sent.delivery.id
    assert (await rb.inbound(first.inbound.id)).status == "reply_enqueued"
    assert await history(rb) == [("user", "hi"), ("assistant", {"text": "hello"})]
    assert len(await rb.deliveries()) == 1
    trace = await rb.trace(first.correlation_id)
    kinds = [e.kind for e in trace.events if e.kind.startswith("turn.")]
    assert kinds == ["turn.started", "turn.answered", "turn.redelivery"]


async def test_a_group_turn_replies_to_the_chat_with_memory_per_person(
    rb: relaybox.Relaybox,
) -> None:
    async with turn(rb) as first:  # resource_id "alice": her memory, in chat-1
        with pytest.raises(relaybox.InvalidReply, match="recipient"):
            await first.reply(["hello"], recipient="")
        assert await rb.deliveries() == []  # the refused reply stored nothing
        sent = await first.reply(["hello"], history=[("assistant", "hello")], recipient="group-42")
    assert (sent.delivery.recipient, sent.delivery.resource_id) == ("group-42", "alice")
    assert await history(rb) == [("assistant", "hello")]
    assert (await rb.inbound(first.inbound.id)).status == "reply_enqueued"


async def test_record_inbound_says_whether_a_duplicate_is_still_unanswered(
    rb: relaybox.Relaybox,
) -> None:
    fields = {"channel": "mem", "external_id": "m9", "thread_id": "chat-1", "resource_id": "a"}
    first = await rb.record_inbound(**fields)
    crashed = await rb.record_inbound(**fields)  # the first attempt died before replying
    assert crashed.duplicate and crashed.unanswered
    await rb.reply(first.inbound.id, ["hello"])
    answered = await rb.record_inbound(**fields)
    assert answered.duplicate and not answered.unanswered


async def test_concurrent_deliveries_run_the_agent_once_and_never_wait(
    store_url: str, rb: relaybox.Relaybox
) -> None:
    others = [relaybox.open(store_url, config=make_config()) for _ in range(3)]
    try:
        scopes = [turn(other) for other in [rb, *others]]
        started = time.monotonic()
        turns = await asyncio.gather(*(scope.__aenter__() for scope in scopes))
        assert time.monotonic() - started < 5
        outcomes = sorted(str(t.outcome) for t in turns)
        assert outcomes == ["in_progress", "in_progress", "in_progress", "new"]
        for scope in scopes:
            await scope.__aexit__(None, None, None)
    finally:
        for other in others:
            other.close()


async def test_concurrent_redeliveries_of_a_crashed_turn_rerun_it_once(
    store_url: str, rb: relaybox.Relaybox
) -> None:
    turn_id = await crash_inside(rb)
    await expire_leases(rb)  # the dead attempt's lease lapses
    others = [relaybox.open(store_url, config=make_config()) for _ in range(3)]
    try:
        scopes = [turn(other) for other in [rb, *others]]
        turns = await asyncio.gather(*(scope.__aenter__() for scope in scopes))
        assert sorted(str(t.outcome) for t in turns) == [
            "in_progress",
            "in_progress",
            "in_progress",
            "retry",
        ]
        record = await rb.store.read(turns_inspect.get_turn(turn_id))
        assert record.attempts == 2 and record.lease_epoch == 2
        for scope in scopes:
            await scope.__aexit__(None, None, None)
    finally:
        for other in others:
            other.close()


async def test_a_crashed_attempt_is_in_progress_until_its_lease_lapses_then_runs_again(
    rb: relaybox.Relaybox,
) -> None:
    turn_id = await crash_inside(rb)
    started = time.monotonic()
    async with turn(rb) as busy:
        assert busy.outcome is Outcome.IN_PROGRESS
    assert time.monotonic() - started < 0.5  # answered at once, not after the lease
    await expire_leases(rb)  # the dead attempt's lease lapses
    async with turn(rb) as retry:
        assert retry.outcome is Outcome.RETRY and retry.attempt == 2 and retry.id == turn_id
        await retry.history.append("user", "hi")
        await retry.reply(["hello"], history=[("assistant", "hello")])
    assert await history(rb) == [("user", "hi"), ("assistant", "hello")]  # no pile-up
    events = [e.event for e in await rb.store.read(turns_inspect.events_of_turn(turn_id))]
    assert events == ["started", "redelivery", "retried", "answered"]


async def test_a_stale_attempt_stores_nothing_after_another_took_over(
    rb: relaybox.Relaybox,
) -> None:
    stale_scope = turn(rb)
    stale = await stale_scope.__aenter__()
    assert stale_scope._keeper is not None
    stale_scope._keeper.cancel()
    await expire_leases(rb)
    async with turn(rb) as fresh:
        assert fresh.outcome is Outcome.RETRY
        with pytest.raises(TurnLeaseLost):
            await stale.history.append("user", "late")
        with pytest.raises(TurnLeaseLost):
            await stale.reply(["late reply"])
        await fresh.reply(["hello"])
    assert await bodies(rb) == ["hello"]


async def test_errors_release_the_turn_and_the_last_attempt_fails_into_audit_and_gaps(
    rb: relaybox.Relaybox,
) -> None:
    for attempt in (1, 2, 3):
        with pytest.raises(RuntimeError, match="model down"):
            async with turn(rb) as running:
                assert running.should_run and running.attempt == attempt
                raise RuntimeError("model down")
    record = await rb.store.read(turns_inspect.get_turn(running.id))
    assert record.status is TurnStatus.FAILED and record.attempts == 3
    async with turn(rb) as after:
        assert after.outcome is Outcome.FAILED
    failures = await rb.failures(FailureFilter(queue="turns"))
    assert [f.terminal for f in failures] == [True, False, False]
    assert [g.id for g in await rb.gaps(0)] == [running.inbound.id]


async def test_a_turn_blocked_on_a_step_continues_once_an_operator_resolves_it(
    rb: relaybox.Relaybox,
) -> None:
    charges: list[str] = []

    async def charge(step: StepContext) -> dict[str, str]:
        charges.append(step.key)
        return {"charge": f"ch_{len(charges)}"}

    async def body(t: relaybox.Turn) -> None:
        done = await rb.step(
            f"{t.key}:charge",
            Intent("charge", {"amount": 5}),
            charge,
            resource_id=t.resource_id,
            correlation_id=t.correlation_id,
        )
        await t.reply([f"charged {done.value['charge']}"])

    # The first attempt dies inside the step, after the side effect, before its outcome.
    scope = turn(rb)
    first = await scope.__aenter__()
    claimed = await rb.store.run(
        step_transitions.claim(
            step_transitions.StepRequest(
                resource_id="alice",
                step_id=f"{first.key}:charge",
                intent=Intent("charge", {"amount": 5}),
                correlation_id=first.correlation_id,
                retry_safe=False,
                new_step=False,
                owner="dead",
                lease_seconds=0.01,
            )
        )
    )
    assert isinstance(claimed, step_transitions.Claimed)
    charges.append("the dead attempt's charge")
    assert scope._keeper is not None
    scope._keeper.cancel()
    await expire_leases(rb)
    with pytest.raises(StepNeedsReconciliation):
        async with turn(rb) as second:
            await body(second)
    assert (await rb.store.read(turns_inspect.get_turn(first.id))).status is TurnStatus.BLOCKED
    async with rb.resume_turn(first.id) as waiting:
        assert waiting.outcome is Outcome.BLOCKED
    assert await rb.store.read(turns_inspect.resumable_turns(0)) == []  # not until resolved
    await rb.store.run(
        step_transitions.resolve(
            claimed.record.id,
            step_transitions.Outcome(StepStatus.SUCCEEDED, '{"charge": "ch_1"}'),
            retention_seconds=3600,
            reason="seen in the PSP",
        )
    )
    assert [t.id for t in await rb.store.read(turns_inspect.resumable_turns(0))] == [first.id]
    async with rb.resume_turn(first.id) as resumed:
        assert resumed.outcome is Outcome.RETRY
        await body(resumed)
    assert charges == ["the dead attempt's charge"]
    assert await bodies(rb) == ["charged ch_1"]


async def test_two_stores_behind_one_deduplicating_receiver_both_reach_their_user(
    store_url: str, sqlite_url: str, tmp_path: Any
) -> None:
    # Two stores (think staging and production) number their messages from 1 alike.
    other_url = f"sqlite:///{tmp_path}/other.db" if store_url == sqlite_url else sqlite_url
    with LoopbackReceiver() as rx:
        for url, user in ((store_url, "alice"), (other_url, "bob")):
            rb = relaybox.open(url, config=make_config())
            try:
                async with rb.turn(
                    channel="mem", external_id="m1", thread_id="chat-1", resource_id=user
                ) as t:
                    sent = await t.reply([f"hello {user}", "second part"])
                got = await rb.record_inbound(
                    channel="mem", external_id="m2", thread_id="chat-1", resource_id=user
                )
                await rb.reply(got.inbound.id, [f"again {user}"])  # the default reply key
                transport = WebhookTransport(rx.url)

                async def delivered(rb: relaybox.Relaybox = rb) -> bool:
                    return all(str(d.status) == "delivered" for d in await rb.deliveries())

                await run_worker_until(rb, transport, delivered)
                assert sent.delivery.id == 1
            finally:
                rb.close()
        shown = [item["text"] for item in rx.seen]
    assert sorted(shown) == sorted(
        ["hello alice", "second part", "again alice", "hello bob", "second part", "again bob"]
    )
    assert rx.duplicates_on_wire == 0


async def test_a_reply_stored_under_the_pre_0006_default_key_is_found_again(
    rb: relaybox.Relaybox,
) -> None:
    fields = {"channel": "mem", "thread_id": "chat-1", "resource_id": "a"}
    got = await rb.record_inbound(external_id="old", **fields)
    legacy = await rb.enqueue(
        channel="mem",
        thread_id="chat-1",
        recipient="a",
        parts=["hi"],
        reply_key=f"inbound-{got.inbound.id}:reply",  # what rb.reply stored before 0006
    )
    again = await rb.reply(got.inbound.id, ["hi"])
    assert not again.created and again.delivery.id == legacy.delivery.id
    fresh = await rb.record_inbound(external_id="new", **fields)
    new = await rb.reply(fresh.inbound.id, ["hi"])
    assert new.created and new.delivery.reply_key.startswith("rbx-")


async def test_a_hung_resume_handler_times_out_as_a_failed_attempt_until_the_limit(
    store_url: str,
) -> None:
    rb = relaybox.open(store_url, config=make_config(handler_timeout_seconds=0.05))
    try:
        turn_id = await crash_inside(rb)
        await expire_leases(rb)
        resumer = Resumer(rb, hang)
        second = await resumer.run_once()  # finds the crashed turn; attempt 2 hangs
        assert [(r.turn_id, r.outcome, r.status) for r in second] == [(turn_id, "retry", "pending")]
        assert second[0].error is not None and second[0].error.startswith("TurnHandlerTimeout")
        third = await resumer.run_once([turn_id])  # still resumable: attempt 3, the last
        assert [(r.outcome, r.status) for r in third] == [("retry", "failed")]
        record = await rb.store.read(turns_inspect.get_turn(turn_id))
        assert record.attempts == 3 and record.error_type == "TurnHandlerTimeout"
        failures = await rb.failures(FailureFilter(queue="turns"))
        assert [(f.terminal, f.error_type, f.job_id) for f in failures] == [
            (True, "TurnHandlerTimeout", str(turn_id)),
            (False, "TurnHandlerTimeout", str(turn_id)),
        ]
        assert [g.id for g in await rb.gaps(0)] == [record.inbound_id]
        assert await resumer.run_once() == []  # failed: nothing left to resume
    finally:
        rb.close()


async def test_a_resume_pass_runs_turns_concurrently(store_url: str) -> None:
    rb = relaybox.open(store_url, config=make_config(resume_concurrency=2))
    both_in = asyncio.Event()
    entered: list[int] = []

    async def meet_then_answer(turn: relaybox.Turn) -> None:
        # One at a time, the first turn would wait here for the second until its timeout.
        entered.append(turn.id)
        if len(entered) == 2:
            both_in.set()
        await both_in.wait()
        await turn.reply(["hello"])

    try:
        ids = [await crash_inside(rb, external_id) for external_id in ("m1", "m2")]
        await expire_leases(rb)
        results = await Resumer(rb, meet_then_answer, timeout=10).run_once()
        assert [(r.turn_id, r.status, r.error) for r in results] == [
            (ids[0], "answered", None),
            (ids[1], "answered", None),
        ]
    finally:
        rb.close()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("handler_timeout_seconds", 0, "must be"),
        ("resume_concurrency", 0, "must be"),
        ("resume_concurrency", 1.5, "whole number"),
    ],
)
def test_resume_settings_are_validated(key: str, value: object, message: str) -> None:
    assert make_config().turns.handler_timeout_seconds == 300.0
    with pytest.raises(relaybox.ConfigError, match=message):
        make_config(**{key: value})
