"""Agent task contracts on both stores: the API, the supervisor, and the review-derived cases.

Time is a ManualClock: deadlines are reached by moving it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from _task_helpers import CONV, TaskRig
from relaybox.errors import InvalidTask, NotFound, TaskConflict, TaskFinished
from relaybox.models import Outcome as SendOutcome
from relaybox.tasks import CancelResult, Contract, EventKind, TaskState
from relaybox.tasks.transitions import result_hash
from relaybox.transports.base import SendResult


@pytest.fixture
async def rig(store_url: str):
    rig = TaskRig(store_url)
    yield rig
    rig.close()


async def kinds(rig: TaskRig, task_id: int) -> list[str]:
    page = await rig.tasks.events(task_id, limit=1000)
    return [str(e.kind) for e in page.events]


async def test_happy_path_ack_progress_result_each_through_the_outbox(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Find flights to Lisbon")
    await handle.ack("On it")
    await handle.progress("Checked 3 airlines", data={"checked": 3})
    await handle.progress(data={"cache_hits": 7})  # journaled only
    await handle.tool_started("search", {"q": "LIS"})
    await handle.tool_finished("search", {"hits": 3})
    task = await handle.complete(["Found 3 flights.", "Cheapest: 212 EUR."])
    assert task.state == TaskState.FINISHING  # not done before the user saw it
    await rig.deliver()
    report = await rig.tick()
    assert report.leader
    task = await handle.refresh()
    assert task.state == TaskState.DONE and task.acked_at is not None
    assert rig.seen() == ["On it", "Checked 3 airlines", "Found 3 flights.", "Cheapest: 212 EUR."]
    assert await kinds(rig, task.id) == [
        "started", "ack_sent", "progress", "progress", "tool_started", "tool_finished",
        "result_sent", "acked", "done",
    ]  # fmt: skip
    page = await rig.tasks.events(task.id)
    assert [e.seq for e in page.events] == list(range(1, 10))
    assert page.events[2].payload == {
        "text": "Checked 3 airlines", "data": {"checked": 3}, "shown": True,
        "delivery_id": page.events[2].payload["delivery_id"],
    }  # fmt: skip
    assert page.events[3].payload["shown"] is False


async def test_missed_ack_sends_the_contract_text_automatically_once(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Book a table")
    rig.clock.advance(4.9)
    assert (await rig.tick()).acted == []
    rig.clock.advance(0.2)
    assert (await rig.tick()).acted == [(handle.id, "auto_ack")]
    assert (await rig.tick()).acted == []
    await rig.deliver()
    await rig.tick()
    task = await handle.refresh()
    assert rig.seen() == ["On it: Book a table"]
    assert task.state == TaskState.ACKED and task.auto_acked


async def test_one_nudge_per_missed_window_and_one_catch_up_after_an_outage(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Compare prices", contract=Contract(finish_within=3600))
    await handle.ack("On it")
    for _ in range(3):  # three windows, each missed once
        rig.clock.advance(30)
        assert (await rig.tick()).acted == [(handle.id, "nudge")]
        assert (await rig.tick()).acted == []  # a second tick in the same window: nothing
    rig.clock.advance(30 * 7 + 5)  # every worker was down for seven windows
    assert (await rig.tick()).acted == [(handle.id, "nudge")]
    assert (await rig.tick()).acted == []
    task = await handle.refresh()
    assert task.state == TaskState.LATE and task.nudges == 4
    events = (await rig.tasks.events(handle.id)).events
    missed = [
        e.payload["missed_windows"]
        for e in events
        if e.kind == EventKind.DEADLINE_MISSED and e.payload["deadline"] == "progress"
    ]
    assert missed == [1, 1, 1, 7]
    await handle.progress("Found it")
    assert (await handle.refresh()).state == TaskState.PROGRESSING  # late -> progressing


async def test_missed_finish_times_out_tells_the_user_records_a_failure_and_runs_hooks(
    rig: TaskRig,
) -> None:
    ended: list[int] = []
    rig.supervisor.hooks.append(lambda task: ended.append(task.id))
    handle = await rig.tasks.start(CONV, "Run the report", contract=Contract(finish_within=60))
    await handle.ack("On it")
    rig.clock.advance(61)
    assert (await rig.tick()).acted == [(handle.id, "timed_out")]
    task = await handle.refresh()
    assert task.state == TaskState.TIMED_OUT and ended == [task.id]
    await rig.deliver()
    assert rig.seen()[-1] == "Sorry, I could not finish this in time: Run the report"
    failures = await rig.rb.failures()
    assert [(f.queue, f.error_type, f.job_id) for f in failures] == [
        ("tasks", "TaskTimedOut", str(task.id))
    ]
    with pytest.raises(TaskFinished, match="progress after the end is refused"):
        await handle.progress("still here")
    assert (await handle.refresh()).last_seq == task.last_seq  # nothing stored


# -- the reviews of the source PR, one test each --------------------------------------------


async def test_a_late_ack_never_moves_progressing_or_late_back_to_acked(rig: TaskRig) -> None:
    progressing = await rig.tasks.start(CONV, "A")
    await progressing.ack("on it")
    await progressing.progress("step 1")
    late = await rig.tasks.start(CONV, "B", contract=Contract(progress_every=10))
    await late.ack("on it too")
    rig.clock.advance(10)
    await rig.tick()
    assert (await late.refresh()).state == TaskState.LATE
    await rig.deliver()  # both acks surface only now
    await rig.tick()
    a, b = await progressing.refresh(), await late.refresh()
    assert (a.state, b.state) == (TaskState.PROGRESSING, TaskState.LATE)
    assert a.acked_at is not None and b.acked_at is not None


async def test_starting_a_task_again_returns_the_stored_one_and_never_resets_it(
    rig: TaskRig,
) -> None:
    first = await rig.tasks.start(CONV, "Search", task_key="job-7")
    await first.progress("half way")
    again = await rig.tasks.start(CONV, "Search", task_key="job-7")
    task = await again.refresh()
    assert again.id == first.id and task.state == TaskState.PROGRESSING and task.last_seq == 2
    with pytest.raises(TaskConflict, match="already names task"):
        await rig.tasks.start(CONV, "Something else", task_key="job-7")


async def test_concurrent_starts_of_one_key_make_one_task(rig: TaskRig) -> None:
    handles = await asyncio.gather(
        *(rig.tasks.start(CONV, "Same", task_key="once") for _ in range(12))
    )
    assert len({h.id for h in handles}) == 1
    assert await kinds(rig, handles[0].id) == ["started"]


async def test_journal_order_is_its_sequence_even_when_timestamps_tie(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Tie")  # the manual clock does not move: equal times
    for n in range(20):
        await handle.progress(data={"n": n})
    events = (await rig.tasks.events(handle.id)).events
    assert len({e.at for e in events}) == 1
    assert [e.payload["data"]["n"] for e in events[1:]] == list(range(20))
    assert [e.seq for e in events] == list(range(1, 22))


async def test_events_are_paged_without_a_hidden_cap(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Many events")
    for n in range(249):
        await handle.progress(data={"n": n})
    seen, after, pages = [], 0, 0
    while True:
        page = await rig.tasks.events(handle.id, after_seq=after, limit=100)
        seen += [e.seq for e in page.events]
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == list(range(1, 251)) and pages == 3


async def test_a_limit_of_zero_is_refused_not_turned_into_one(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Limits")
    with pytest.raises(ValueError, match="limit must be a whole number from 1"):
        await rig.tasks.events(handle.id, limit=0)
    with pytest.raises(ValueError, match="limit must be a whole number from 1"):
        await rig.tasks.list(limit=0)
    from relaybox.tasks.transitions import tick

    with pytest.raises(ValueError, match="at least 1"):
        tick("w", 0.0, 1.0, 0, {})


async def test_payloads_are_stored_and_returned_as_json_objects(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "JSON")
    await handle.progress(data={"nested": {"list": [1, 2]}, "text": '{"not": "parsed"}'})
    from relaybox.store import Tx

    def stored_types(tx: Tx) -> list[str]:
        rows = tx.fetch_all("task_events_page", {"task_id": handle.id, "after_seq": 0, "limit": 10})
        return [type(r["payload"]).__name__ for r in rows]

    types = await rig.rb.store.read(stored_types)
    # A JSON object column: checked TEXT on SQLite (json_type = 'object'), jsonb on PostgreSQL.
    assert types == (["str", "str"] if rig.rb.store.dialect == "sqlite" else ["dict", "dict"])
    event = (await rig.tasks.events(handle.id)).events[1]
    assert event.payload["data"] == {"nested": {"list": [1, 2]}, "text": '{"not": "parsed"}'}
    assert isinstance(event.payload["data"]["nested"], dict)
    assert json.loads(json.dumps(event.to_json()))["payload"]["data"]["nested"]["list"] == [1, 2]


def test_the_result_hash_is_sha256_of_canonical_json() -> None:
    expected = hashlib.sha256(json.dumps(["a", "b"], separators=(",", ":")).encode()).hexdigest()
    assert result_hash(["a", "b"]) == expected == result_hash(("a", "b"))
    assert result_hash(["a", "b"]) != result_hash(["b", "a"])


async def test_completing_twice_same_result_returns_stored_other_result_refused(
    rig: TaskRig,
) -> None:
    handle = await rig.tasks.start(CONV, "Once")
    first = await handle.complete(["answer"])
    again = await handle.complete(["answer"])
    assert again.result_delivery_id == first.result_delivery_id and again.last_seq == first.last_seq
    with pytest.raises(TaskConflict, match="another result"):
        await handle.complete(["another answer"])
    with pytest.raises(TaskFinished, match="refused"):
        await handle.fail("late failure", user_text="oops")


@pytest.mark.parametrize(
    "contract, message",
    [
        (Contract(ack_within=0), "ack_within must be greater than 0"),
        (Contract(progress_every=-5), "progress_every must be greater than 0"),
        (Contract(finish_within=10**9), "finish_within must be at most"),
        (Contract(finish_within=float("nan")), "finish_within must be a number"),
    ],
)
async def test_zero_negative_and_absurd_deadlines_are_refused(
    rig: TaskRig, contract: Contract, message: str
) -> None:
    with pytest.raises(InvalidTask, match=message):
        await rig.tasks.start(CONV, "Bad", contract=contract)
    assert await rig.tasks.list() == []


async def test_bad_input_is_refused_before_anything_is_stored(rig: TaskRig) -> None:
    with pytest.raises(InvalidTask, match="summary is 501 characters"):
        await rig.tasks.start(CONV, "x" * 501)
    with pytest.raises(InvalidTask, match="ack_text"):
        await rig.tasks.start(CONV, "y" * 400, contract=Contract(ack_text="{summary}" * 11))
    with pytest.raises(NotFound, match="task 999 does not exist"):
        await rig.tasks.handle(999).progress("hello")
    handle = await rig.tasks.start(CONV, "ok")
    with pytest.raises(InvalidTask, match="progress text"):
        await handle.progress("z" * 5000)
    with pytest.raises(InvalidTask, match="JSON object"):
        await handle.progress(data=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidTask, match="the limit is 65536"):
        await handle.progress(data={"blob": "x" * 70_000})
    with pytest.raises(InvalidTask, match="must be finite"):
        await handle.tool_started("search", {"score": float("nan")})
    assert (await handle.refresh()).last_seq == 1
    assert len(await rig.tasks.list()) == 1


async def test_cancel_is_reported_after_it_took_effect_with_the_same_text_shown(
    rig: TaskRig,
) -> None:
    handle = await rig.tasks.start(CONV, "Long job")
    outcome = await rig.tasks.cancel(handle.id, "You asked me to stop.")
    assert outcome.result == CancelResult.CANCELLED
    stored = await handle.refresh()  # read back: the cancel is committed, not just requested
    assert stored.state == TaskState.CANCELLED and stored.cancel_reason == "You asked me to stop."
    await rig.deliver()
    assert rig.seen() == ["You asked me to stop."]
    with pytest.raises(TaskFinished):
        await handle.progress("more")


async def test_cancel_of_a_finished_task_reports_already_finished(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Quick")
    await handle.complete(["done!"])
    outcome = await rig.tasks.cancel(handle.id, "too late")
    assert outcome.result == CancelResult.ALREADY_FINISHED
    assert outcome.task.state == TaskState.FINISHING and outcome.task.cancel_reason is None
    await rig.deliver()
    await rig.tick()
    outcome = await rig.tasks.cancel(handle.id, "still too late")
    assert outcome.result == CancelResult.ALREADY_FINISHED
    assert outcome.task.state == TaskState.DONE
    assert rig.seen() == ["done!"]


async def test_cancel_racing_completion_has_exactly_one_winner(rig: TaskRig) -> None:
    for n in range(10):
        handle = await rig.tasks.start(CONV, f"race {n}")
        cancelled, completed = await asyncio.gather(
            rig.tasks.cancel(handle.id, "stop"),
            handle.complete(["result"]),
            return_exceptions=True,
        )
        task = await handle.refresh()
        if task.state == TaskState.CANCELLED:
            assert cancelled.result == CancelResult.CANCELLED  # type: ignore[union-attr]
            assert isinstance(completed, TaskFinished)
        else:
            assert task.state == TaskState.FINISHING
            assert cancelled.result == CancelResult.ALREADY_FINISHED  # type: ignore[union-attr]
            assert not isinstance(completed, BaseException)


async def test_a_surfaced_result_is_never_downgraded_by_recovery(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Recover", contract=Contract(finish_within=60))
    await handle.complete(["the answer"])
    await rig.deliver()  # surfaced, but no supervisor ran
    rig.clock.advance(3600)  # every worker was down far past every deadline
    report = await rig.tick()  # the startup recovery
    assert report.acted == [(handle.id, "done")]
    assert (await handle.refresh()).state == TaskState.DONE
    assert await rig.rb.failures() == []


async def test_a_status_the_platform_did_not_show_does_not_count(rig: TaskRig) -> None:
    shown = {"n": 0}

    def not_shown_twice(part):
        shown["n"] += 1
        if shown["n"] <= 2:
            return SendResult(SendOutcome.NOT_SURFACED)
        return None

    rig.transport.script = not_shown_twice
    handle = await rig.tasks.start(CONV, "Shown?")
    await handle.ack("on it")
    deliver = asyncio.create_task(rig.deliver())
    await rig.tick()
    assert (await handle.refresh()).acked_at is None
    await deliver
    await rig.tick()
    assert (await handle.refresh()).acked_at is not None


async def test_an_undeliverable_result_fails_the_task_and_records_why(rig: TaskRig) -> None:
    from relaybox.transports.base import PermanentError

    handle = await rig.tasks.start(CONV, "Unlucky")
    rig.transport.script = lambda part: PermanentError("blocked by the user")
    await handle.complete(["result"])
    await rig.deliver()
    await rig.tick()
    task = await handle.refresh()
    assert task.state == TaskState.FAILED and "could not be delivered" in (task.error or "")
    failures = [(f.queue, f.error_type) for f in await rig.rb.failures()]
    assert ("tasks", "ResultNotDelivered") in failures


async def test_the_terminal_kind_is_an_enum_not_parsed_from_text(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Enum")
    await handle.fail(RuntimeError("api down"), user_text="done: completed successfully")
    await rig.deliver()
    await rig.tick()
    task = await handle.refresh()
    assert task.state == TaskState.FAILED and task.error_type == "RuntimeError"


async def test_a_lagging_supervisor_never_misses_progress_that_was_reported(rig: TaskRig) -> None:
    handle = await rig.tasks.start(CONV, "Busy")
    await handle.ack("on it")
    await rig.deliver()
    assert (await rig.tick()).acted == [(handle.id, "acked")]
    rig.clock.advance(25)
    await handle.progress("still going")
    rig.clock.advance(25)  # the first window has passed, but progress came in time
    assert (await rig.tick()).acted == []  # the supervisor reads stored deadlines, not a feed
    assert (await handle.refresh()).nudges == 0


async def test_terminal_notice_errors_are_raised_and_roll_the_tick_back(
    rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaybox.tasks import transitions

    handle = await rig.tasks.start(CONV, "Notice", contract=Contract(finish_within=10))
    real = transitions._Change.send

    def broken(self, key, parts):
        if key == "timeout":
            raise RuntimeError("outbox refused the notice")
        return real(self, key, parts)

    monkeypatch.setattr(transitions._Change, "send", broken)
    rig.clock.advance(11)
    with pytest.raises(RuntimeError, match="outbox refused"):
        await rig.tick()
    task = await handle.refresh()
    assert task.state == TaskState.CREATED and task.last_seq == 1  # not silently timed out
    monkeypatch.setattr(transitions._Change, "send", real)
    assert (await rig.tick()).acted == [(handle.id, "timed_out")]


async def test_a_done_event_is_never_written_when_the_state_change_fails(
    rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaybox.tasks import transitions

    handle = await rig.tasks.start(CONV, "Atomic")
    await handle.complete(["r"])
    await rig.deliver()
    real = transitions._row_params

    def failing(task):
        if task.state == TaskState.DONE:
            raise RuntimeError("update failed")
        return real(task)

    monkeypatch.setattr(transitions, "_row_params", failing)
    with pytest.raises(RuntimeError):
        await rig.tick()
    assert "done" not in await kinds(rig, handle.id)
    assert (await handle.refresh()).state == TaskState.FINISHING
    monkeypatch.setattr(transitions, "_row_params", real)
    await rig.tick()
    assert (await kinds(rig, handle.id))[-1] == "done"


async def test_store_writes_never_block_the_event_loop(rig: TaskRig) -> None:
    import threading

    handle = await rig.tasks.start(CONV, "Loop")
    gate = threading.Event()

    def slow(tx):
        gate.wait(5)

    blocker = rig.rb.store.submit(slow)
    ticks = 0

    async def counter() -> None:
        nonlocal ticks
        while not gate.is_set():
            ticks += 1
            await asyncio.sleep(0.001)
            if ticks == 20:
                gate.set()

    progress = asyncio.create_task(handle.progress("while the store is busy"))
    await counter()  # runs while progress waits behind the slow unit
    await progress
    blocker.result()
    assert ticks >= 20


async def test_a_failure_is_handed_back_to_the_agents_conversation(store_url: str) -> None:
    rig = TaskRig(store_url, hand_back=True)
    try:
        handle = await rig.tasks.start(CONV, "Hand back", contract=Contract(finish_within=5))
        rig.clock.advance(6)
        await rig.tick()
        inbound = await rig.rb.inbound(1)
        assert inbound.thread_id == CONV.thread_id and "timed out" in (inbound.text or "")
        assert inbound.meta is not None and inbound.meta["relaybox_task"] == handle.id
    finally:
        rig.close()


async def test_a_row_that_fails_to_decode_fails_loudly_and_rolls_back(sqlite_url: str) -> None:
    from relaybox.errors import TaskDataError
    from relaybox.store import Tx

    rig = TaskRig(sqlite_url)
    try:
        good = await rig.tasks.start(CONV, "Good", contract=Contract(progress_every=10))
        bad = await rig.tasks.start(CONV, "Bad", contract=Contract(progress_every=10))
        await good.ack("on it")
        await bad.ack("on it")

        def corrupt(tx: Tx) -> None:
            tx.execute_script(f"UPDATE tasks SET nudge_text = NULL WHERE id = {bad.id}")

        with pytest.raises(Exception, match="NOT NULL"):  # the schema refuses it outright
            await rig.rb.store.run(corrupt)

        def corrupt_due(tx: Tx) -> None:  # REAL affinity keeps text it cannot convert
            tx.execute_script(f"UPDATE tasks SET finish_due = 'soon' WHERE id = {bad.id}")

        await rig.rb.store.run(corrupt_due)
        rig.clock.advance(11)
        with pytest.raises(TaskDataError, match=f"task row {bad.id} cannot be decoded"):
            await rig.tick()
        assert (await good.refresh()).nudges == 0  # the whole tick rolled back, nothing skipped
        with pytest.raises(TaskDataError):
            await rig.tasks.list()
    finally:
        rig.close()


async def test_migration_0008_is_idempotent(store_url: str) -> None:
    from importlib import resources

    from relaybox.store import Tx

    rig = TaskRig(store_url)
    try:
        await rig.tasks.start(CONV, "Survives a second run of the migration")
        dialect = rig.rb.store.dialect
        script = (
            resources.files("relaybox.store")
            .joinpath(f"migrations/{dialect}/0008_tasks.sql")
            .read_text(encoding="utf-8")
        )

        def again(tx: Tx) -> None:
            tx.execute_script(script)
            tx.execute_script(script)

        await rig.rb.store.run(again)
        assert len(await rig.tasks.list()) == 1
        report = await rig.tick()
        assert report.leader  # the one supervisor row is still there, and usable
    finally:
        rig.close()


async def test_a_result_receipt_is_never_stranded_in_sending_after_an_error(
    rig: TaskRig,
) -> None:
    from relaybox.models import Status

    failures = {"n": 0}

    def flaky(part):
        if part.text == "the result" and failures["n"] == 0:
            failures["n"] += 1
            return ConnectionResetError("connection reset mid-send")
        return None

    rig.transport.script = flaky
    handle = await rig.tasks.start(CONV, "Receipt")
    task = await handle.complete(["the result"])
    await rig.deliver()  # returns only once nothing is queued or sending
    assert task.result_delivery_id is not None
    receipt = await rig.rb.delivery(task.result_delivery_id)
    assert receipt.status == Status.DELIVERED and receipt.attempts == 2
    await rig.tick()
    assert (await handle.refresh()).state == TaskState.DONE
    assert [a.outcome for a in await rig.rb.attempts(receipt.id)][-1] == "surfaced"


async def test_an_ack_and_its_receipt_settle_in_one_transaction(
    rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaybox.tasks import transitions

    handle = await rig.tasks.start(CONV, "Ack atomically")
    await handle.ack("on it")
    await rig.deliver()
    real = transitions._Change.commit

    def failing(self):
        if any(kind == EventKind.ACKED for kind, _ in self.events):
            self.tx.execute("insert_task_event", {"task_id": -1})  # the journal write fails
        return real(self)

    monkeypatch.setattr(transitions._Change, "commit", failing)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await rig.tick()
    task = await handle.refresh()
    assert task.acked_at is None and "acked" not in await kinds(rig, handle.id)
    monkeypatch.setattr(transitions._Change, "commit", real)
    await rig.tick()
    task = await handle.refresh()
    assert task.acked_at is not None and (await kinds(rig, handle.id))[-1] == "acked"
