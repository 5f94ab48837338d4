"""Every state change of a task, in one place, each one guarded write (``update_task``).

    created ──ack surfaced──► acked ──progress──► progressing ◄──progress── late
       │                        │                     │  └──missed window: nudge──►┘
       └────────progress────────┴──────────►──────────┘
    created | acked | progressing | late ──result or failure text enqueued──► finishing
    finishing ──its delivery surfaced──► done  (or failed, for a failure text)
    finishing ──its delivery failed / expired / cancelled──► failed
    created | acked | progressing | late ──finish deadline──► timed_out   (user told)
    created | acked | progressing | late ──body stopped beating──► failed (user told)
    created | acked | progressing | late ──cancel──► cancelled           (user told)

Terminal states (done, failed, timed_out, cancelled) are final; nothing moves backwards. An
acknowledgement that surfaces late only records ``acked_at``: it never turns ``progressing`` or
``late`` back into ``acked``. An ack or a result *counts* only once its delivery was surfaced;
until then the task waits in its state (``finishing`` for a result) and the supervisor
reconciles it from the delivery's status.

How a write is guarded: each unit locks the task row (``lock_task``: ``FOR UPDATE`` on
PostgreSQL, the write transaction itself on SQLite), decides in Python, then writes with
``update_task ... WHERE state = <state read> AND last_seq = <seq read>``; the state change, its
journal events (numbered ``last_seq + 1, +2, ...``), the messages it enqueues through the outbox,
and the ``job_failures`` row it explains are written in that one unit of work. A write that
finds the row changed raises and rolls the whole unit back: never half a transition.

The supervisor's :func:`tick` runs under a lease (``task_supervisor``): of any number of
workers, only the holder acts on deadlines, and a dead holder's lease lapses so another takes
over. Its first tick after a start is the startup recovery, in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from relaybox import jsonvalue
from relaybox.audit.record import FailureReport, to_row
from relaybox.audit.recorder import insert_failure
from relaybox.config import ChannelConfig
from relaybox.errors import InvalidState, NotFound, TaskConflict, TaskDataError, TaskFinished
from relaybox.inbound.record import RecordInbound, build_inbound
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.tasks.models import (
    OPEN,
    CancelOutcome,
    CancelResult,
    EventKind,
    Outcome,
    ResolvedContract,
    Task,
    TaskState,
)

AGENT = "agent"
FAILURE_QUEUE = "tasks"
MAX_FAILURE_PAYLOAD = 16_384


@dataclass(frozen=True)
class StartRequest:
    """A validated task, ready to store (see :mod:`relaybox.tasks.api`)."""

    task_key: str
    channel: str
    thread_id: str
    recipient: str
    resource_id: str
    correlation_id: str
    summary: str
    contract: ResolvedContract
    runner: str | None = None


@dataclass
class TickReport:
    """What one supervisor tick did."""

    leader: bool
    acted: list[tuple[int, str]] = field(default_factory=list)  # (task id, what)
    ended: list[Task] = field(default_factory=list)  # tasks this tick timed out or failed


# -- the change of one task ---------------------------------------------------------------


class _Change:
    """One transition of one locked task: new fields, journal events, messages."""

    def __init__(
        self,
        tx: Tx,
        task: Task,
        now: float,
        actor: str,
        channels: Mapping[str, ChannelConfig],
    ) -> None:
        self.tx = tx
        self.before = task
        self.task = task
        self.now = now
        self.actor = actor
        self.channels = channels
        self.events: list[tuple[EventKind, dict[str, Any]]] = []

    def set(self, **changes: Any) -> None:
        self.task = replace(self.task, **changes)

    def event(self, kind: EventKind, **payload: Any) -> int:
        self.events.append((kind, payload))
        return self.before.last_seq + len(self.events)

    def send(self, key: str, parts: Sequence[str]) -> int:
        """Enqueue a message to the task's conversation, in this transaction; its delivery id."""
        task = self.task
        channel = self.channels.get(task.channel) or ChannelConfig(task.channel, "noop")
        request = build_request(
            channel,
            thread_id=task.thread_id,
            recipient=task.recipient,
            parts=list(parts),
            resource_id=task.resource_id,
            reply_key=f"task-{task.id}:{key}",
            correlation_id=task.correlation_id,
        )
        # The outbox keeps its own (system) time: a delivery is claimable when it is due by the
        # wall clock, whatever clock the task deadlines are measured on (tests move theirs).
        return EnqueueUnit(request)(self.tx).delivery.id

    def record_failure(self, error_type: str, message: str, stage: str) -> None:
        task = self.task
        report = FailureReport(
            queue=FAILURE_QUEUE,
            error=message,
            error_type=error_type,
            job_id=task.id,
            stage=stage,
            channel=task.channel,
            thread_id=task.thread_id,
            resource_id=task.resource_id,
            correlation_id=task.correlation_id,
            payload={"task_id": task.id, "summary": task.summary, "state": str(task.state)},
            worker_id=self.actor,
            at=self.now,
        )
        insert_failure(to_row(report, MAX_FAILURE_PAYLOAD))(self.tx)

    def hand_back(self, text: str) -> None:
        """Tell the agent's conversation: an inbound message it answers like any other."""
        task = self.task
        if not task.hand_back:
            return
        request = build_inbound(
            channel=task.channel,
            external_id=f"relaybox-task-{task.id}:{task.state}",
            thread_id=task.thread_id,
            resource_id=task.resource_id,
            text=text,
            meta={
                "relaybox_task": task.id,
                "state": str(task.state),
                "error_type": task.error_type,
                "error": task.error,
                "task_correlation_id": task.correlation_id,
            },
        )
        RecordInbound(request, now=self.now)(self.tx)

    def commit(self) -> Task:
        before, task = self.before, self.task
        if before.state.terminal and task.state != before.state:  # pragma: no cover - guarded
            raise InvalidState(f"task {before.id} is {before.state}; terminal states are final")
        task = replace(
            task,
            last_seq=before.last_seq + len(self.events),
            updated_at=self.now,
            next_due=_next_due(task),
            finished_at=(
                self.now if task.state.terminal and not before.state.terminal else task.finished_at
            ),
        )
        params = _row_params(task)
        params.update(from_state=str(before.state), from_seq=before.last_seq, now=self.now)
        if self.tx.execute("update_task", params) != 1:
            raise InvalidState(
                f"task {before.id} changed while it was being updated; nothing was written"
            )
        for number, (kind, payload) in enumerate(self.events, before.last_seq + 1):
            self.tx.execute(
                "insert_task_event",
                {
                    "task_id": task.id,
                    "seq": number,
                    "at": self.now,
                    "kind": str(kind),
                    "actor": self.actor,
                    "payload": jsonvalue.dumps(payload, f"{kind} payload"),
                },
            )
        return task


def _next_due(task: Task) -> float | None:
    if task.state not in OPEN:
        return None
    dues = [d for d in (task.ack_due, task.progress_due, task.finish_due, task.liveness_due) if d]
    return min(dues) if dues else None


def _row_params(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "state": str(task.state),
        "outcome": None if task.outcome is None else str(task.outcome),
        "ack_due": task.ack_due,
        "progress_due": task.progress_due,
        "liveness_due": task.liveness_due,
        "next_due": task.next_due,
        "ack_delivery_id": task.ack_delivery_id,
        "acked_at": task.acked_at,
        "auto_acked": 1 if task.auto_acked else 0,
        "nudges": task.nudges,
        "result_delivery_id": task.result_delivery_id,
        "result_hash": task.result_hash,
        "notice_delivery_id": task.notice_delivery_id,
        "error_type": task.error_type,
        "error": task.error,
        "cancel_reason": task.cancel_reason,
        "runner": task.runner,
        "last_progress_at": task.last_progress_at,
        "last_seq": task.last_seq,
        "finished_at": task.finished_at,
    }


def _lock(tx: Tx, task_id: int) -> Task:
    row = tx.fetch_one("lock_task", {"id": task_id})
    if row is None:
        raise NotFound(f"task {task_id} does not exist")
    return Task.from_row(row)


def _lock_or_skip(tx: Tx, task_id: int) -> Task | None:
    """The supervisor's lock: None when an agent holds the row (the next tick handles it)."""
    row = tx.fetch_one("lock_task_or_skip", {"id": task_id})
    return None if row is None else Task.from_row(row)


def _refuse_unless_open(task: Task, what: str) -> None:
    if task.state in OPEN:
        return
    raise TaskFinished(
        f"task {task.id} is {task.state}; {what} after the end is refused (nothing was stored)"
    )


def result_hash(parts: Sequence[str]) -> str:
    """SHA-256 of the canonical JSON of the result parts: the same result, the same hash."""
    return hashlib.sha256(jsonvalue.canonical(list(parts), "result").encode()).hexdigest()


# -- the agent's transitions --------------------------------------------------------------


def start(request: StartRequest, now: float, channels: Mapping[str, ChannelConfig]) -> Unit[Task]:
    """Unit: store a new task (``created``), or return the stored one for the same key.

    Starting again never resets a task: the stored row comes back as it is. The same key for
    another conversation or summary is refused (:class:`TaskConflict`).
    """

    def unit(tx: Tx) -> Task:
        c = request.contract
        ack_due = now + c.ack_within
        progress_due = now + c.progress_every
        finish_due = now + c.finish_within
        row = tx.fetch_one(
            "insert_task",
            {
                "task_key": request.task_key,
                "channel": request.channel,
                "thread_id": request.thread_id,
                "recipient": request.recipient,
                "resource_id": request.resource_id,
                "correlation_id": request.correlation_id,
                "summary": request.summary,
                "ack_within": c.ack_within,
                "progress_every": c.progress_every,
                "finish_within": c.finish_within,
                "liveness_within": c.liveness,
                "ack_text": c.ack_text,
                "nudge_text": c.nudge_text,
                "timeout_text": c.timeout_text,
                "interrupted_text": c.interrupted_text,
                "hand_back": 1 if c.hand_back else 0,
                "ack_due": ack_due,
                "progress_due": progress_due,
                "finish_due": finish_due,
                "next_due": min(ack_due, progress_due, finish_due),
                "runner": request.runner,
                "now": now,
            },
        )
        if row is None:
            stored = tx.fetch_one("task_by_key", {"task_key": request.task_key})
            if stored is None:  # pragma: no cover - the conflicting row exists in this tx
                raise TaskDataError(f"task key {request.task_key!r} conflicted but is missing")
            task = Task.from_row(stored)
            if (task.channel, task.thread_id, task.recipient, task.summary) != (
                request.channel,
                request.thread_id,
                request.recipient,
                request.summary,
            ):
                raise TaskConflict(
                    f"task key {request.task_key!r} already names task {task.id} with another"
                    " conversation or summary; use a new key for a new task"
                )
            return task
        change = _Change(tx, Task.from_row(row), now, AGENT, channels)
        change.event(
            EventKind.STARTED,
            summary=request.summary,
            contract={
                "ack_within": c.ack_within,
                "progress_every": c.progress_every,
                "finish_within": c.finish_within,
                "liveness": c.liveness,
            },
        )
        return change.commit()

    return unit


def ack(task_id: int, text: str, now: float, channels: Mapping[str, ChannelConfig]) -> Unit[Task]:
    """Unit: enqueue the acknowledgement; it counts once its delivery was surfaced.

    A second ack (or one after an automatic ack) changes nothing and returns the task.
    """

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        _refuse_unless_open(task, "an acknowledgement")
        if task.ack_delivery_id is not None or task.acked_at is not None:
            return task
        change = _Change(tx, task, now, AGENT, channels)
        delivery_id = change.send("ack", [text])
        change.set(ack_delivery_id=delivery_id, progress_due=now + task.progress_every)
        change.event(EventKind.ACK_SENT, delivery_id=delivery_id, text=text, auto=False)
        return change.commit()

    return unit


def progress(
    task_id: int,
    text: str | None,
    data: dict[str, Any] | None,
    now: float,
    channels: Mapping[str, ChannelConfig],
) -> Unit[Task]:
    """Unit: a sign of life. ``text`` is shown to the user; ``data`` is only journaled."""

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        _refuse_unless_open(task, "progress")
        change = _Change(tx, task, now, AGENT, channels)
        delivery_id = None
        if text is not None:
            delivery_id = change.send(f"progress-{task.last_seq + 1}", [text])
        change.set(
            state=TaskState.PROGRESSING,
            progress_due=now + task.progress_every,
            last_progress_at=now,
        )
        change.event(
            EventKind.PROGRESS,
            text=text,
            data=data or {},
            shown=text is not None,
            delivery_id=delivery_id,
        )
        return change.commit()

    return unit


def tool(
    task_id: int,
    name: str,
    finished: bool,
    data: dict[str, Any] | None,
    now: float,
    channels: Mapping[str, ChannelConfig],
) -> Unit[Task]:
    """Unit: journal that a tool call started or finished (not shown to the user)."""

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        _refuse_unless_open(task, "a tool call")
        change = _Change(tx, task, now, AGENT, channels)
        kind = EventKind.TOOL_FINISHED if finished else EventKind.TOOL_STARTED
        change.event(kind, tool=name, data=data or {})
        return change.commit()

    return unit


def question(
    task_id: int, text: str, now: float, channels: Mapping[str, ChannelConfig]
) -> Unit[Task]:
    """Unit: ask the user something (shown, like progress, so it is also a sign of life)."""

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        _refuse_unless_open(task, "a question")
        change = _Change(tx, task, now, AGENT, channels)
        delivery_id = change.send(f"question-{task.last_seq + 1}", [text])
        state = TaskState.PROGRESSING if task.state == TaskState.LATE else task.state
        change.set(state=state, progress_due=now + task.progress_every, last_progress_at=now)
        change.event(EventKind.QUESTION, text=text, delivery_id=delivery_id)
        return change.commit()

    return unit


def complete(
    task_id: int, parts: Sequence[str], now: float, channels: Mapping[str, ChannelConfig]
) -> Unit[Task]:
    """Unit: enqueue the result (``finishing``); ``done`` once its delivery surfaced.

    Completing again with the same parts returns the stored task; other parts are refused.
    """
    digest = result_hash(parts)

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        if task.outcome == Outcome.DONE:
            if task.result_hash == digest:
                return task
            raise TaskConflict(
                f"task {task.id} was already completed with another result; it is kept"
            )
        _refuse_unless_open(task, "a result")
        change = _Change(tx, task, now, AGENT, channels)
        delivery_id = change.send("result", parts)
        change.set(
            state=TaskState.FINISHING,
            outcome=Outcome.DONE,
            result_delivery_id=delivery_id,
            result_hash=digest,
        )
        change.event(
            EventKind.RESULT_SENT, outcome=str(Outcome.DONE), delivery_id=delivery_id,
            parts=len(parts),
        )  # fmt: skip
        return change.commit()

    return unit


def fail(
    task_id: int,
    error_type: str,
    error: str,
    user_text: str,
    now: float,
    channels: Mapping[str, ChannelConfig],
) -> Unit[Task]:
    """Unit: the body failed. Enqueue ``user_text`` (``finishing``), record a job failure."""

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        if task.outcome == Outcome.FAILED:
            return task
        _refuse_unless_open(task, "a failure")
        change = _Change(tx, task, now, AGENT, channels)
        delivery_id = change.send("failure", [user_text])
        change.set(
            state=TaskState.FINISHING,
            outcome=Outcome.FAILED,
            result_delivery_id=delivery_id,
            error_type=error_type,
            error=error,
        )
        change.event(
            EventKind.RESULT_SENT,
            outcome=str(Outcome.FAILED),
            delivery_id=delivery_id,
            error_type=error_type,
            error=error,
            text=user_text,
        )
        change.record_failure(error_type, error, "task")
        return change.commit()

    return unit


def cancel(
    task_id: int,
    reason: str,
    actor: str,
    now: float,
    channels: Mapping[str, ChannelConfig],
) -> Unit[CancelOutcome]:
    """Unit: cancel an open task, telling the user ``reason`` (the very text stored).

    A task that finished first, or whose result is already on its way, is reported as
    ``already_finished`` and left exactly as it is. The answer is given after the commit, so a
    ``cancelled`` report means the cancel took effect.
    """

    def unit(tx: Tx) -> CancelOutcome:
        task = _lock(tx, task_id)
        if task.state not in OPEN:
            return CancelOutcome(CancelResult.ALREADY_FINISHED, task)
        change = _Change(tx, task, now, actor, channels)
        delivery_id = change.send("cancel", [reason])
        change.set(state=TaskState.CANCELLED, cancel_reason=reason, notice_delivery_id=delivery_id)
        change.event(EventKind.CANCELLED, reason=reason, delivery_id=delivery_id)
        return CancelOutcome(CancelResult.CANCELLED, change.commit())

    return unit


def beat(task_id: int, runner: str, now: float) -> Unit[Task]:
    """Unit: the body is alive (the run helper calls this); returns the task as stored.

    Not journaled (it would drown the journal); it only moves ``liveness_due``. A task that
    ended is returned unchanged, which is how a running body learns it was cancelled.
    """

    def unit(tx: Tx) -> Task:
        task = _lock(tx, task_id)
        if task.state not in OPEN:
            return task
        change = _Change(tx, task, now, AGENT, {})
        change.set(liveness_due=now + task.liveness_within, runner=runner)
        return change.commit()

    return unit


# -- the supervisor -----------------------------------------------------------------------


def tick(
    worker_id: str,
    now: float,
    lease_seconds: float,
    limit: int,
    channels: Mapping[str, ChannelConfig],
) -> Unit[TickReport]:
    """Unit: one supervisor pass, in one transaction, only by the lease holder.

    1. acknowledgements whose delivery ended: surfaced -> ``acked_at``; not surfaced -> an
       automatic ack (once);
    2. results whose delivery ended: surfaced -> ``done``/``failed``; not -> ``failed``;
    3. due deadlines: finish -> ``timed_out``; liveness -> ``failed`` (interrupted); ack -> an
       automatic ack; progress -> one nudge (and one only, however many windows were missed).

    Results are settled before deadlines, so a result that surfaced is never downgraded.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1 (got {limit})")
    actor = f"supervisor:{worker_id}"

    def unit(tx: Tx) -> TickReport:
        held = tx.fetch_one("task_supervision")
        if held is not None and held["holder"] != worker_id and held["lease_until"] >= now:
            # Someone else supervises: a plain read, so a worker that is not the supervisor
            # never waits on the lease row's lock (its batch may carry delivery writes).
            return TickReport(leader=False)
        params = {"worker_id": worker_id, "now": now, "lease_until": now + lease_seconds}
        if tx.fetch_one("take_task_supervision", params) is None:
            return TickReport(leader=False)
        report = TickReport(leader=True)
        for row in tx.fetch_all("tasks_ack_settled", {"limit": limit}):
            _settle_ack(tx, row, now, actor, channels, report)
        for row in tx.fetch_all("tasks_result_settled", {"limit": limit}):
            _settle_result(tx, row, now, actor, channels, report)
        for row in tx.fetch_all("tasks_due", {"now": now, "limit": limit}):
            _handle_due(tx, int(row["id"]), now, actor, channels, report)
        return report

    return unit


def supervised_by_another(worker_id: str, now: float) -> Unit[bool]:
    """Unit (read): whether another worker holds an unexpired supervisor lease.

    The supervisor asks this on a read connection first, so the workers that do not supervise
    never open a write transaction (on SQLite, never take the write lock) just to learn it.
    """

    def unit(tx: Tx) -> bool:
        held = tx.fetch_one("task_supervision")
        return bool(
            held is not None
            and held["holder"] not in (None, worker_id)
            and held["lease_until"] >= now
        )

    return unit


def release_supervision(worker_id: str) -> Unit[None]:
    """Unit: give up the supervisor lease (clean shutdown): another worker takes over now."""

    def unit(tx: Tx) -> None:
        tx.execute("release_task_supervision", {"worker_id": worker_id})

    return unit


def _settle_ack(
    tx: Tx,
    row: dict[str, Any],
    now: float,
    actor: str,
    channels: Mapping[str, ChannelConfig],
    report: TickReport,
) -> None:
    task = _lock_or_skip(tx, int(row["id"]))
    if task is None or task.acked_at is not None or task.ack_delivery_id is None:
        return
    change = _Change(tx, task, now, actor, channels)
    delivery_id = task.ack_delivery_id
    if row["delivery_status"] == "delivered":
        # Only created -> acked: a late ack never moves progressing/late backwards.
        state = TaskState.ACKED if task.state == TaskState.CREATED else task.state
        change.set(state=state, acked_at=now, ack_due=None)
        change.event(EventKind.ACKED, delivery_id=delivery_id, auto=task.auto_acked)
        report.acted.append((task.id, "acked"))
    elif task.state in OPEN and not task.auto_acked:
        change.event(
            EventKind.DEADLINE_MISSED,
            deadline="ack",
            reason=f"acknowledgement delivery {delivery_id} is {row['delivery_status']}",
        )
        _auto_ack(change)
        report.acted.append((task.id, "auto_ack"))
    else:
        change.set(ack_delivery_id=None, ack_due=None)
        change.event(
            EventKind.DEADLINE_MISSED,
            deadline="ack",
            reason=f"no acknowledgement could be delivered (delivery {delivery_id}"
            f" is {row['delivery_status']})",
        )
        report.acted.append((task.id, "ack_undeliverable"))
    change.commit()


def _auto_ack(change: _Change) -> None:
    task = change.task
    delivery_id = change.send("auto-ack", [task.ack_text])
    change.set(ack_delivery_id=delivery_id, auto_acked=True, ack_due=None)
    change.event(EventKind.ACK_SENT, delivery_id=delivery_id, text=task.ack_text, auto=True)


def _settle_result(
    tx: Tx,
    row: dict[str, Any],
    now: float,
    actor: str,
    channels: Mapping[str, ChannelConfig],
    report: TickReport,
) -> None:
    task = _lock_or_skip(tx, int(row["id"]))
    if task is None or task.state != TaskState.FINISHING:
        return
    if task.outcome is None:
        raise TaskDataError(f"task {task.id} is finishing without an outcome to settle")
    change = _Change(tx, task, now, actor, channels)
    status = row["delivery_status"]
    if status == "delivered":
        state = TaskState.DONE if task.outcome == Outcome.DONE else TaskState.FAILED
        change.set(state=state)
        kind = EventKind.DONE if state == TaskState.DONE else EventKind.FAILED
        change.event(kind, delivery_id=task.result_delivery_id, surfaced=True)
        report.acted.append((task.id, str(state)))
        change.commit()
        return
    error = (
        f"the {'result' if task.outcome == Outcome.DONE else 'failure message'} could not be"
        f" delivered: delivery {task.result_delivery_id} is {status}"
    )
    if row["delivery_error"]:
        error += f" ({row['delivery_error']})"
    change.set(
        state=TaskState.FAILED,
        error_type=task.error_type or "ResultNotDelivered",
        error=task.error or error,
    )
    change.event(
        EventKind.FAILED, delivery_id=task.result_delivery_id, surfaced=False, reason=error
    )
    change.record_failure("ResultNotDelivered", error, "task.result")
    change.hand_back(f"Task {task.id} ({task.summary}) failed: {error}")
    report.acted.append((task.id, "failed"))
    report.ended.append(change.commit())


def _handle_due(
    tx: Tx,
    task_id: int,
    now: float,
    actor: str,
    channels: Mapping[str, ChannelConfig],
    report: TickReport,
) -> None:
    task = _lock_or_skip(tx, task_id)
    if task is None or task.state not in OPEN or task.next_due is None or task.next_due > now:
        return  # an agent is changing it, or it changed since the scan: the next tick looks
    change = _Change(tx, task, now, actor, channels)
    if task.finish_due <= now:
        delivery_id = change.send("timeout", [task.timeout_text])
        error = f"not finished within {task.finish_within:g}s"
        change.set(
            state=TaskState.TIMED_OUT,
            notice_delivery_id=delivery_id,
            error_type="TaskTimedOut",
            error=error,
        )
        change.event(EventKind.DEADLINE_MISSED, deadline="finish", due=task.finish_due)
        change.event(EventKind.TIMED_OUT, delivery_id=delivery_id, text=task.timeout_text)
        change.record_failure("TaskTimedOut", error, "task.finish_deadline")
        change.hand_back(f"Task {task.id} ({task.summary}) timed out: {error}")
        report.acted.append((task.id, "timed_out"))
        report.ended.append(change.commit())
        return
    if task.liveness_due is not None and task.liveness_due <= now:
        delivery_id = change.send("interrupted", [task.interrupted_text])
        error = f"the process running the task ({task.runner}) stopped reporting liveness"
        change.set(
            state=TaskState.FAILED,
            outcome=Outcome.FAILED,
            notice_delivery_id=delivery_id,
            error_type="TaskInterrupted",
            error=error,
        )
        change.event(EventKind.DEADLINE_MISSED, deadline="liveness", due=task.liveness_due)
        change.event(EventKind.FAILED, delivery_id=delivery_id, interrupted=True, reason=error)
        change.record_failure("TaskInterrupted", error, "task.liveness")
        change.hand_back(f"Task {task.id} ({task.summary}) was interrupted: {error}")
        report.acted.append((task.id, "interrupted"))
        report.ended.append(change.commit())
        return
    if task.ack_due is not None and task.ack_due <= now:
        change.event(EventKind.DEADLINE_MISSED, deadline="ack", due=task.ack_due)
        if task.ack_delivery_id is None:
            _auto_ack(change)
            report.acted.append((task.id, "auto_ack"))
            if task.progress_due is not None and task.progress_due <= now:
                # After an outage the ack is the sign of life: no burst of catch-up messages.
                change.set(progress_due=now + task.progress_every)
            change.commit()
            return
        # The agent's ack is still on its way: it counts once surfaced; nothing to send.
        change.set(ack_due=None)
        if task.progress_due is None or task.progress_due > now:
            report.acted.append((task.id, "ack_pending"))
            change.commit()
            return
    if task.progress_due is not None and task.progress_due <= now:
        missed = int((now - task.progress_due) // task.progress_every) + 1
        number = task.nudges + 1
        delivery_id = change.send(f"nudge-{number}", [task.nudge_text])
        change.set(state=TaskState.LATE, nudges=number, progress_due=now + task.progress_every)
        change.event(
            EventKind.DEADLINE_MISSED,
            deadline="progress",
            due=task.progress_due,
            missed_windows=missed,
        )
        change.event(EventKind.NUDGE, delivery_id=delivery_id, number=number)
        report.acted.append((task.id, "nudge"))
        change.commit()
        return
    raise TaskDataError(f"task {task.id} has next_due {task.next_due} but no due deadline")
