"""Idempotent steps (spec C5), on both stores: a side effect runs once per step and intent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaybox.audit.query import FailureFilter, list_failures
from relaybox.config import Config, parse_config
from relaybox.outbox import inspect as outbox_inspect
from relaybox.steps import (
    Intent,
    InvalidStep,
    RetryableStepError,
    StepContext,
    StepFailed,
    StepInProgress,
    StepIntentMismatch,
    StepNeedsReconciliation,
    StepPolicy,
    StepRunner,
    StepStatus,
    StepTimedOut,
    StepWaitTimeout,
    transitions,
)
from relaybox.steps import inspect as steps_inspect
from relaybox.steps.tool import tool_step
from relaybox.store import Store, open_store

CHARGE = Intent(
    "charge_card", {"amount": 1200, "currency": "EUR"}, model="m-1", sampling={"seed": 7}
)


def make_config(**steps: float) -> Config:
    return parse_config(
        {
            "steps": {
                "lease_seconds": 0.6,
                "wait_timeout_seconds": 5,
                "poll_interval_seconds": 0.02,
                **steps,
            },
            "channels": {"sms": {"transport": "memory"}},
        }
    )


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def runner(store: Store, config: Config) -> StepRunner:
    return StepRunner(store, config)


@pytest.fixture
def second_store(store_url: str) -> Iterator[Store]:
    """Another connection to the same database, as a second process would have."""
    other = open_store(store_url)
    yield other
    other.close()


class Card:
    """A fake payment provider that appends every charge to a file: the side effect we count."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def charge(self, key: str) -> str:
        with self.path.open("a") as log:
            log.write(key + "\n")
        return f"ch_{self.count()}"

    def count(self) -> int:
        return len(self.path.read_text().splitlines()) if self.path.exists() else 0

    def keys(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


@pytest.fixture
def card(tmp_path: Path) -> Card:
    return Card(tmp_path / "charges.log")


def charging(card: Card) -> Any:
    async def body(step: StepContext) -> dict[str, Any]:
        return {"charge": card.charge(step.key), "attempt": step.attempt}

    return body


async def events(store: Store, step_pk: int) -> list[str]:
    return [e.event for e in await store.read(steps_inspect.events_of_step(step_pk))]


async def test_a_repeat_returns_the_stored_outcome_without_running_the_body(
    runner: StepRunner, store: Store, card: Card
) -> None:
    first = await runner.run("in-1:charge", CHARGE, charging(card), resource_id="alice")
    again = await runner.run("in-1:charge", CHARGE, charging(card), resource_id="alice")
    third = await runner.run("in-1:charge", CHARGE, charging(card), resource_id="alice")
    assert card.count() == 1
    assert first.value == again.value == third.value == {"charge": "ch_1", "attempt": 1}
    assert (first.replayed, again.replayed, third.replayed) == (False, True, True)
    assert first.record.status is StepStatus.SUCCEEDED
    assert await events(store, first.record.id) == ["started", "succeeded", "replayed", "replayed"]


async def test_the_body_gets_a_stable_key_to_pass_downstream(
    store: Store, config: Config, card: Card
) -> None:
    # Two runners stand for two processes: the key depends on the step, not on who runs it.
    ran = await StepRunner(store, config).run("s", CHARGE, charging(card), resource_id="alice")
    again = await StepRunner(store, config).run("s", CHARGE, charging(card), resource_id="alice")
    assert card.keys() == [ran.key] and again.key == ran.key and ran.key.startswith("rbx-")
    bob = await StepRunner(store, config).run("s", CHARGE, charging(card), resource_id="bob")
    other = await StepRunner(store, config).run("t", CHARGE, charging(card), resource_id="alice")
    assert len({ran.key, bob.key, other.key}) == 3


async def test_two_users_identical_steps_never_share_an_outcome(
    runner: StepRunner, card: Card
) -> None:
    alice = await runner.run("in-1:charge", CHARGE, charging(card), resource_id="alice")
    bob = await runner.run("in-1:charge", CHARGE, charging(card), resource_id="bob")
    assert card.count() == 2
    assert not alice.replayed and not bob.replayed
    assert alice.value["charge"] != bob.value["charge"]
    assert alice.record.id != bob.record.id
    assert (await runner.run("in-1:charge", CHARGE, charging(card), resource_id="bob")).value == (
        bob.value
    )


async def test_an_error_is_stored_and_replayed_without_running_again(
    runner: StepRunner, store: Store, card: Card
) -> None:
    async def declined(step: StepContext) -> None:
        card.charge(step.key)
        raise ValueError("card declined: insufficient funds")

    with pytest.raises(StepFailed) as first:
        await runner.run("s", CHARGE, declined, resource_id="alice", correlation_id="corr-1")
    with pytest.raises(StepFailed) as again:
        await runner.run("s", CHARGE, declined, resource_id="alice", correlation_id="corr-2")
    assert card.count() == 1
    assert (first.value.replayed, again.value.replayed) == (False, True)
    assert first.value.error_type == again.value.error_type == "ValueError"
    assert again.value.error_message == "card declined: insufficient funds"
    assert isinstance(first.value.__cause__, ValueError)
    record = await store.read(steps_inspect.find_step("alice", "s"))
    assert record.status is StepStatus.FAILED
    failures = await store.read(list_failures(FailureFilter(queue="steps", job_id="s")))
    assert [(f.stage, f.correlation_id, f.terminal) for f in failures] == [
        ("failed", "corr-1", True)
    ]
    assert failures[0].resource_id == "alice" and failures[0].error_type == "ValueError"
    assert failures[0].payload is not None and '"charge_card"' in failures[0].payload


@pytest.mark.parametrize("how", ["RetryableStepError", "policy.retryable"])
async def test_a_retryable_error_is_not_cached(
    runner: StepRunner, store: Store, card: Card, how: str
) -> None:
    failures = 0

    async def flaky(step: StepContext) -> str:
        nonlocal failures
        if failures == 0:
            failures += 1
            if how == "RetryableStepError":
                raise RetryableStepError("gateway unreachable")
            raise ConnectionError("gateway unreachable")
        return card.charge(step.key)

    policy = StepPolicy(retryable=(ConnectionError,))
    with pytest.raises((RetryableStepError, ConnectionError)):
        await runner.run("s", CHARGE, flaky, resource_id="alice", policy=policy)
    pending = await store.read(steps_inspect.find_step("alice", "s"))
    assert pending.status is StepStatus.PENDING and pending.result is None
    result = await runner.run("s", CHARGE, flaky, resource_id="alice", policy=policy)
    assert not result.replayed and result.value == "ch_1" and result.record.attempts == 2
    assert card.keys() == [pending.idempotency_key]  # the retry used the same key
    assert await events(store, result.record.id) == [
        "started",
        "retryable_error",
        "started",
        "succeeded",
    ]
    audit = await store.read(list_failures(FailureFilter(queue="steps", job_id="s")))
    assert [(f.stage, f.terminal) for f in audit] == [("retryable_error", False)]


async def test_reusing_a_step_id_with_another_intent_is_refused(
    runner: StepRunner, store: Store, card: Card
) -> None:
    first = await runner.run("s", CHARGE, charging(card), resource_id="alice")
    bigger = Intent(
        "charge_card", {"amount": 9900, "currency": "EUR"}, model="m-1", sampling={"seed": 7}
    )
    with pytest.raises(StepIntentMismatch, match="pass new_step=True") as refused:
        await runner.run("s", bigger, charging(card), resource_id="alice")
    assert first.record.intent_hash[:12] in str(refused.value)
    assert card.count() == 1
    kept = await store.read(steps_inspect.find_step("alice", "s"))
    assert kept.result == first.value  # the stored outcome is intact
    replaced = await runner.run("s", bigger, charging(card), resource_id="alice", new_step=True)
    assert card.count() == 2 and not replaced.replayed
    assert replaced.record.generation == 2 and replaced.key != first.key
    with pytest.raises(StepIntentMismatch):
        await runner.run("s", CHARGE, charging(card), resource_id="alice")
    assert "intent_mismatch" in await events(store, first.record.id)


async def test_concurrent_duplicates_one_runs_the_other_waits(
    store: Store, second_store: Store, config: Config, card: Card
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_charge(step: StepContext) -> str:
        started.set()
        await release.wait()
        return card.charge(step.key)

    async def duplicate() -> Any:
        await started.wait()
        return await StepRunner(second_store, config).run(
            "s", CHARGE, slow_charge, resource_id="alice"
        )

    first = asyncio.create_task(
        StepRunner(store, config).run("s", CHARGE, slow_charge, resource_id="alice")
    )
    waiter = asyncio.create_task(duplicate())
    await started.wait()
    await asyncio.sleep(0.3)
    assert not waiter.done()  # still waiting for the first run's outcome
    release.set()
    ran, waited = await first, await waiter
    assert card.count() == 1
    assert ran.value == waited.value == "ch_1"
    assert (ran.replayed, waited.replayed) == (False, True)


async def test_fail_fast_mode_reports_in_progress(
    store: Store, second_store: Store, config: Config, card: Card
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(step: StepContext) -> str:
        started.set()
        await release.wait()
        return card.charge(step.key)

    task = asyncio.create_task(
        StepRunner(store, config).run("s", CHARGE, slow, resource_id="alice")
    )
    await started.wait()
    with pytest.raises(StepInProgress, match="is running now"):
        await StepRunner(second_store, config).run(
            "s", CHARGE, slow, resource_id="alice", policy=StepPolicy(if_running="fail")
        )
    release.set()
    await task
    assert card.count() == 1


async def test_a_waiting_duplicate_gives_up_with_a_clear_error(
    store: Store, second_store: Store, config: Config
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(step: StepContext) -> str:
        started.set()
        await release.wait()
        return "done"

    task = asyncio.create_task(
        StepRunner(store, config).run("s", CHARGE, slow, resource_id="alice")
    )
    await started.wait()
    with pytest.raises(StepWaitTimeout, match=r"still running after waiting 0\.3s"):
        await StepRunner(second_store, config).run(
            "s", CHARGE, slow, resource_id="alice", policy=StepPolicy(wait_timeout=0.3)
        )
    release.set()
    assert (await task).value == "done"
    assert "wait_timed_out" in await events(store, (await task).record.id)


async def test_a_long_body_keeps_its_lease_so_a_duplicate_keeps_waiting(
    store: Store, second_store: Store, card: Card
) -> None:
    # Without lease renewal the duplicate would find the lease lapsed and flag the step.
    config = make_config(lease_seconds=0.3)
    started = asyncio.Event()

    async def slower_than_the_lease(step: StepContext) -> str:
        started.set()
        await asyncio.sleep(config.steps.lease_seconds * 3)
        return card.charge(step.key)

    first = asyncio.create_task(
        StepRunner(store, config).run("s", CHARGE, slower_than_the_lease, resource_id="alice")
    )
    await started.wait()
    waited = await StepRunner(second_store, config).run(
        "s", CHARGE, slower_than_the_lease, resource_id="alice"
    )
    assert waited.replayed and (await first).value == waited.value and card.count() == 1


@pytest.mark.parametrize("retry_safe", [False, True])
async def test_a_timeout_is_a_recorded_outcome(
    runner: StepRunner, store: Store, card: Card, retry_safe: bool
) -> None:
    async def hangs(step: StepContext) -> str:
        card.charge(step.key)
        await asyncio.sleep(30)
        return "never"

    policy = StepPolicy(timeout=0.2, retry_safe=retry_safe)
    with pytest.raises(StepTimedOut, match=r"ran past its 0\.2s timeout") as timed_out:
        await runner.run("s", CHARGE, hangs, resource_id="alice", policy=policy)
    assert not timed_out.value.replayed
    record = await store.read(steps_inspect.find_step("alice", "s"))
    audit = await store.read(list_failures(FailureFilter(queue="steps", job_id="s")))
    assert [(f.stage, f.error_type) for f in audit] == [("timed_out", "StepTimedOut")]
    if retry_safe:
        # Retry-safe: the timeout is journaled, and the next run tries again with the same key.
        assert record.status is StepStatus.PENDING
        with pytest.raises(StepTimedOut):
            await runner.run("s", CHARGE, hangs, resource_id="alice", policy=policy)
        assert card.keys() == [record.idempotency_key] * 2
    else:
        assert record.status is StepStatus.TIMED_OUT and record.finished_at is not None
        with pytest.raises(StepTimedOut, match="stored outcome replayed") as replayed:
            await runner.run("s", CHARGE, hangs, resource_id="alice", policy=policy)
        assert replayed.value.replayed and card.count() == 1
    assert "timed_out" in await events(store, record.id)


async def test_a_body_raising_its_own_timeout_error_has_failed_not_timed_out(
    runner: StepRunner,
) -> None:
    async def upstream_timeout(step: StepContext) -> None:
        raise TimeoutError("the airline API timed out")

    with pytest.raises(StepFailed, match="TimeoutError: the airline API timed out"):
        await runner.run(
            "s", CHARGE, upstream_timeout, resource_id="alice", policy=StepPolicy(timeout=10)
        )


async def test_a_reply_is_enqueued_in_the_same_transaction_as_the_outcome(
    runner: StepRunner, store: Store, card: Card
) -> None:
    async def charge_and_tell(step: StepContext) -> str:
        charge = card.charge(step.key)
        step.reply(
            channel="sms", thread_id="chat-42", recipient="+15550100", parts=["Paid.", charge]
        )
        return charge

    done = await runner.run(
        "s", CHARGE, charge_and_tell, resource_id="+15550100", correlation_id="corr-7"
    )
    again = await runner.run("s", CHARGE, charge_and_tell, resource_id="+15550100")
    assert len(done.delivery_ids) == 1 and again.delivery_ids == done.delivery_ids
    delivery = await store.read(outbox_inspect.get_delivery(done.delivery_ids[0]))
    assert [p.body for p in delivery.parts] == ["Paid.", "ch_1"]
    assert delivery.correlation_id == "corr-7" and delivery.resource_id == "+15550100"
    assert len(await store.read(outbox_inspect.list_deliveries())) == 1


async def test_a_failing_step_enqueues_no_reply(runner: StepRunner, store: Store) -> None:
    async def tell_then_fail(step: StepContext) -> None:
        step.reply(channel="sms", thread_id="chat-42", recipient="+15550100", parts=["Paid."])
        raise RuntimeError("booking refused")

    with pytest.raises(StepFailed):
        await runner.run("s", CHARGE, tell_then_fail, resource_id="+15550100")
    assert await store.read(outbox_inspect.list_deliveries()) == []


async def test_a_result_that_is_not_json_is_stored_as_a_failure(
    runner: StepRunner, card: Card
) -> None:
    async def returns_a_set(step: StepContext) -> set[str]:
        card.charge(step.key)
        return {"ch_1"}

    for _ in range(2):
        with pytest.raises(StepFailed, match="InvalidStepResult: step result is a set"):
            await runner.run("s", CHARGE, returns_a_set, resource_id="alice")
    assert card.count() == 1  # the charge happened once; it is never run again


async def test_an_outcome_expires_after_its_retention(store: Store, card: Card) -> None:
    runner = StepRunner(store, make_config(retention_seconds=0.2))
    await runner.run("s", CHARGE, charging(card), resource_id="alice")
    assert (await runner.run("s", CHARGE, charging(card), resource_id="alice")).replayed
    await asyncio.sleep(0.3)
    fresh = await runner.run("s", CHARGE, charging(card), resource_id="alice")
    assert not fresh.replayed and card.count() == 2
    await runner.run("old", CHARGE, charging(card), resource_id="bob")
    await asyncio.sleep(0.3)
    assert await store.read(steps_inspect.count_expired()) == 2
    assert await store.run(transitions.prune_expired(batch_size=10)) == 2
    assert await store.read(steps_inspect.list_steps()) == []


async def test_a_cancelled_run_is_decided_by_the_crash_policy_at_once(
    runner: StepRunner, store: Store, card: Card
) -> None:
    started = asyncio.Event()

    async def charge_then_hang(step: StepContext) -> str:
        card.charge(step.key)
        started.set()
        await asyncio.sleep(30)
        return "never"

    task = asyncio.create_task(runner.run("s", CHARGE, charge_then_hang, resource_id="alice"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)  # the interruption note is written without awaiting
    began = time.monotonic()
    with pytest.raises(StepNeedsReconciliation, match="relaybox steps resolve"):
        await runner.run("s", CHARGE, charge_then_hang, resource_id="alice")
    assert time.monotonic() - began < runner.config.steps.lease_seconds * 5
    record = await store.read(steps_inspect.find_step("alice", "s"))
    assert record.status is StepStatus.NEEDS_RECONCILIATION and card.count() == 1
    assert await events(store, record.id) == ["started", "interrupted", "needs_reconciliation"]
    flagged = await store.read(steps_inspect.list_steps(needs_reconciliation=True))
    assert [s.id for s in flagged] == [record.id]


async def test_an_operator_resolution_is_replayed_or_reruns(
    runner: StepRunner, store: Store, card: Card
) -> None:
    for step_id in ("paid", "not-paid"):
        started = asyncio.Event()

        async def hang(step: StepContext, started: asyncio.Event = started) -> str:
            started.set()
            await asyncio.sleep(30)
            return "never"

        task = asyncio.create_task(runner.run(step_id, CHARGE, hang, resource_id="alice"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.1)
    for step_id in ("paid", "not-paid"):
        with pytest.raises(StepNeedsReconciliation):
            await runner.run(step_id, CHARGE, charging(card), resource_id="alice")
    paid = await store.read(steps_inspect.find_step("alice", "paid"))
    outcome = transitions.Outcome(StepStatus.SUCCEEDED, '{"charge":"ch_from_psp_dashboard"}')
    await store.run(transitions.resolve(paid.id, outcome, retention_seconds=60, reason="seen"))
    replay = await runner.run("paid", CHARGE, charging(card), resource_id="alice")
    assert replay.replayed and replay.value == {"charge": "ch_from_psp_dashboard"}
    unpaid = await store.read(steps_inspect.find_step("alice", "not-paid"))
    await store.run(transitions.resolve(unpaid.id, None, retention_seconds=60, reason="no"))
    rerun = await runner.run("not-paid", CHARGE, charging(card), resource_id="alice")
    assert not rerun.replayed and card.count() == 1
    assert (await events(store, unpaid.id))[-3:] == ["resolved", "started", "succeeded"]


async def test_the_tool_step_decorator_builds_the_intent_from_the_arguments(
    runner: StepRunner, card: Card
) -> None:
    @tool_step(runner, "book_table", model="m-1", sampling={"temperature": 0})
    async def book(step: StepContext, *, people: int, at: str) -> dict[str, Any]:
        return {"booking": card.charge(step.key), "people": people, "at": at}

    first = await book(step_id="in-3:book", resource_id="alice", people=2, at="19:30")
    again = await book(step_id="in-3:book", resource_id="alice", at="19:30", people=2.0)
    assert first == again == {"booking": "ch_1", "people": 2, "at": "19:30"}
    assert card.count() == 1
    with pytest.raises(StepIntentMismatch):
        await book(step_id="in-3:book", resource_id="alice", people=3, at="19:30")
    assert book.intent(people=2, at="19:30").hash == book.intent(at="19:30", people=2).hash


async def test_step_events_carry_the_correlation_id(
    runner: StepRunner, store: Store, card: Card
) -> None:
    await runner.run("s", CHARGE, charging(card), resource_id="alice", correlation_id="corr-A")
    await runner.run("s", CHARGE, charging(card), resource_id="alice", correlation_id="corr-B")
    a = await store.read(steps_inspect.step_events_for_correlation("corr-A"))
    b = await store.read(steps_inspect.step_events_for_correlation("corr-B"))
    assert [e.event for e in a] == ["started", "succeeded"]
    assert [e.event for e in b] == ["replayed"]
    assert all(e.step_id == "s" and e.resource_id == "alice" for e in a + b)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"step_id": ""}, "step_id must be a non-empty string"),
        ({"resource_id": "  "}, "resource_id must be a non-empty string"),
        ({"resource_id": None}, "resource_id must be a non-empty string"),
        ({"step_id": "x" * 513}, "step_id is 513 characters; the limit is 512"),
        ({"intent": {"tool": "charge"}}, "a step needs an Intent, not dict"),
        ({"policy": StepPolicy(timeout=-1)}, "timeout must be a positive number"),
        ({"policy": StepPolicy(if_running="block")}, "if_running must be 'wait' or 'fail'"),  # type: ignore[arg-type]
        ({"policy": StepPolicy(retryable=ValueError)}, "retryable must be a tuple"),  # type: ignore[arg-type]
        ({"correlation_id": ""}, "correlation id must be a non-empty string"),
    ],
)
async def test_bad_calls_are_refused_before_anything_is_stored(
    runner: StepRunner, store: Store, card: Card, call: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"step_id": "s", "intent": CHARGE, "resource_id": "alice", **call}
    with pytest.raises(InvalidStep, match=message):
        await runner.run(
            arguments.pop("step_id"), arguments.pop("intent"), charging(card), **arguments
        )
    assert card.count() == 0
    assert await store.read(steps_inspect.list_steps()) == []


async def test_an_agent_turn_through_the_public_client(store_url: str, card: Card) -> None:
    import relaybox

    rb = relaybox.open(store_url, config=make_config())
    try:

        async def turn() -> relaybox.StepResult:
            got = await rb.record_inbound(
                channel="sms",
                external_id="SM-81",
                thread_id="chat-42",
                resource_id="+15550100",
                text="book a table for two at 19:30",
            )
            memory = rb.memory(relaybox.Scope("+15550100", "chat-42"))
            await memory.history.append("user", "book a table for two at 19:30")

            async def book(step: relaybox.StepContext) -> dict[str, Any]:
                booking = card.charge(step.key)
                step.reply(
                    channel="sms",
                    thread_id="chat-42",
                    recipient="+15550100",
                    parts=[f"Booked: {booking}."],
                )
                return {"booking": booking}

            done = await rb.step(
                f"{got.correlation_id}:book",
                relaybox.Intent("book_table", {"people": 2, "at": "19:30"}, model="m-1"),
                book,
                resource_id="+15550100",
                correlation_id=got.correlation_id,
            )
            await memory.working.merge({"last_booking": done.value["booking"]})
            return done

        first = await turn()
        again = await turn()  # the agent is retried: the webhook came twice
        assert card.count() == 1 and again.replayed and again.value == first.value
        assert again.delivery_ids == first.delivery_ids
        assert len(await rb.deliveries()) == 1
        shown = await rb.memory_admin().show("+15550100")
        assert shown.working is not None
        assert shown.working.document == {"last_booking": "ch_1"}
        kinds = [e.kind for e in (await rb.trace(first.record.correlation_id)).events]
        assert kinds[:4] == [
            "inbound.received",
            "step.started",
            "step.succeeded",
            "delivery.enqueued",
        ]
        assert "step.replayed" in kinds

        @rb.tool_step("refund", retryable=(ConnectionError,))
        async def refund(step: relaybox.StepContext, *, charge: str) -> str:
            return f"re_{charge}"

        assert await refund(step_id="r-1", resource_id="+15550100", charge="ch_1") == "re_ch_1"
    finally:
        rb.close()


async def test_the_worker_pruner_forgets_expired_outcomes(store: Store, card: Card) -> None:
    from relaybox.config import RetentionConfig
    from relaybox.worker.pruner import prune_expired_steps

    runner = StepRunner(store, make_config(retention_seconds=0.1))
    for n in range(5):
        await runner.run(f"s{n}", CHARGE, charging(card), resource_id="alice")
    await asyncio.sleep(0.2)
    await runner.run("fresh", CHARGE, charging(card), resource_id="alice")
    forgotten = await prune_expired_steps(store, RetentionConfig(batch_size=2), asyncio.Event())
    assert forgotten == 5
    assert [s.step_id for s in await store.read(steps_inspect.list_steps())] == ["fresh"]
