"""Hypothesis stateful test: random events from several writers never move a task backwards.

Writers: the agent (ack, progress, complete, fail), an operator (cancel), two supervisors
ticking as time moves, and the outbox settling deliveries (surfaced or failed). After every
step, for every task: the state change is an allowed transition, terminal states stay put,
the journal is numbered 1..n without gaps, ``done`` / ``acked_at`` only follow a surfaced
delivery, and nudges are at least one progress window apart.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from _task_helpers import task_config
from relaybox.errors import TaskConflict, TaskFinished
from relaybox.store import Store, Tx, open_store
from relaybox.tasks import EventKind, TaskState
from relaybox.tasks import inspect as task_inspect
from relaybox.tasks import transitions as tr
from relaybox.tasks.models import Contract, Task

S = TaskState
ALLOWED = {
    S.CREATED: {S.CREATED, S.ACKED, S.PROGRESSING, S.LATE, S.FINISHING, S.TIMED_OUT,
                S.CANCELLED, S.FAILED},
    S.ACKED: {S.ACKED, S.PROGRESSING, S.LATE, S.FINISHING, S.TIMED_OUT, S.CANCELLED, S.FAILED},
    S.PROGRESSING: {S.PROGRESSING, S.LATE, S.FINISHING, S.TIMED_OUT, S.CANCELLED, S.FAILED},
    S.LATE: {S.LATE, S.PROGRESSING, S.FINISHING, S.TIMED_OUT, S.CANCELLED, S.FAILED},
    S.FINISHING: {S.FINISHING, S.DONE, S.FAILED},
    S.DONE: {S.DONE}, S.FAILED: {S.FAILED}, S.TIMED_OUT: {S.TIMED_OUT},
    S.CANCELLED: {S.CANCELLED},
}  # fmt: skip
CONFIG = task_config()
CLOCK = [time.time()]  # shared by every example: time only moves forward
SEEN: dict[str, int] = {"tasks": 0, "changes": 0, "terminal": 0}  # the run was not vacuous


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    with open_store(url) as opened:
        yield opened


def make_machine(store: Store) -> type[RuleBasedStateMachine]:
    channels = CONFIG.channels

    class TaskModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[int] = []
            self.last: dict[int, Task] = {}

        def now(self) -> float:
            return CLOCK[0]

        def run(self, unit: object) -> object:
            return store.run_sync(unit)  # type: ignore[arg-type]

        @rule(finish=st.sampled_from([60.0, 300.0]))
        def start(self, finish: float) -> None:
            if len(self.ids) >= 4:
                return
            contract = Contract(finish_within=finish).resolve(CONFIG.tasks.contract_defaults("mem"))
            request = tr.StartRequest(
                task_key=f"k-{time.time_ns()}", channel="mem", thread_id="t", recipient="r",
                resource_id="r", correlation_id="c", summary="s", contract=contract,
            )  # fmt: skip
            task = self.run(tr.start(request, self.now(), channels))
            assert isinstance(task, Task)
            self.ids.append(task.id)
            self.last[task.id] = task
            SEEN["tasks"] += 1

        def pick(self, data: st.DataObject) -> int | None:
            index = data.draw(st.integers(0, 1_000))  # the same draw whatever the store holds
            return self.ids[index % len(self.ids)] if self.ids else None

        @rule(data=st.data(), op=st.sampled_from(["ack", "progress", "complete", "complete2",
                                                   "fail", "cancel", "question"]))  # fmt: skip
        def agent_or_operator(self, data: st.DataObject, op: str) -> None:
            task_id = self.pick(data)
            if task_id is None:
                return
            now = self.now()
            units = {
                "ack": lambda: tr.ack(task_id, "on it", now, channels),
                "progress": lambda: tr.progress(task_id, "p", {"x": 1}, now, channels),
                "question": lambda: tr.question(task_id, "q?", now, channels),
                "complete": lambda: tr.complete(task_id, ["r"], now, channels),
                "complete2": lambda: tr.complete(task_id, ["other"], now, channels),
                "fail": lambda: tr.fail(task_id, "E", "boom", "sorry", now, channels),
                "cancel": lambda: tr.cancel(task_id, "stop", "operator", now, channels),
            }
            before = self.last[task_id]
            try:
                self.run(units[op]())
            except TaskFinished:
                assert not before.state.open or op == "fail" or op.startswith("complete")
                current = store.read_sync(task_inspect.get_task(task_id))
                assert not current.state.open
            except TaskConflict:
                assert op.startswith("complete")

        @rule(seconds=st.sampled_from([1.0, 5.0, 29.0, 31.0, 90.0, 400.0]),
              supervisor=st.sampled_from(["sup-a", "sup-b"]))  # fmt: skip
        def time_passes_and_a_supervisor_ticks(self, seconds: float, supervisor: str) -> None:
            CLOCK[0] += seconds
            self.run(tr.tick(supervisor, self.now(), 0.5, 500, channels))

        @rule(data=st.data(), surfaced=st.booleans())
        def outbox_settles_a_delivery(self, data: st.DataObject, surfaced: bool) -> None:
            index = data.draw(st.integers(0, 1_000))
            pending = store.read_sync(_pending_deliveries)
            if not pending:
                return
            delivery_id = pending[index % len(pending)]
            status = "delivered" if surfaced else "failed"
            store.run_sync(_settle(delivery_id, status))

        @invariant()
        def tasks_only_move_forward(self) -> None:
            for task_id in self.ids:
                before = self.last[task_id]
                task = store.read_sync(task_inspect.get_task(task_id))
                assert task.state in ALLOWED[before.state], (before.state, task.state)
                SEEN["changes"] += task.state != before.state
                SEEN["terminal"] += task.state.terminal and not before.state.terminal
                if before.state.terminal:
                    assert task.finished_at == before.finished_at
                page = store.read_sync(task_inspect.events(task_id, limit=10_000))
                assert [e.seq for e in page.events] == list(range(1, task.last_seq + 1))
                kinds = [e.kind for e in page.events]
                assert kinds.count(EventKind.NUDGE) == task.nudges
                nudges = [e.at for e in page.events if e.kind == EventKind.NUDGE]
                assert all(b - a >= task.progress_every for a, b in itertools.pairwise(nudges))
                if task.state == S.DONE:
                    assert store.read_sync(_status(task.result_delivery_id)) == "delivered"
                    assert kinds.count(EventKind.DONE) == 1
                else:
                    assert EventKind.DONE not in kinds
                if task.acked_at is not None:
                    assert store.read_sync(_status(task.ack_delivery_id)) == "delivered"
                self.last[task_id] = task

    return TaskModel


def _pending_deliveries(tx: Tx) -> list[int]:
    params = {"status": "queued", "thread_id": None, "channel": None, "limit": 50}
    return [int(row["id"]) for row in tx.fetch_all("list_deliveries", params)]


def _settle(delivery_id: int, status: str):
    def unit(tx: Tx) -> None:
        tx.execute_script(
            f"UPDATE deliveries SET status = '{status}', finished_at = 1 WHERE id = {delivery_id}"
        )

    return unit


def _status(delivery_id: int | None):
    def unit(tx: Tx) -> str | None:
        if delivery_id is None:
            return None
        row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
        return None if row is None else str(row["status"])

    return unit


def test_random_event_sequences_never_move_a_task_backwards(store: Store) -> None:
    run_state_machine_as_test(
        make_machine(store),
        settings=settings(max_examples=30, stateful_step_count=25, deadline=None),
    )
    assert SEEN["tasks"] > 0 and SEEN["changes"] > 0 and SEEN["terminal"] > 0, SEEN
