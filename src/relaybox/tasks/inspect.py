"""Read units for tasks: the API, ``relaybox tasks``, ``trace`` and ``health`` use these.

Every row is decoded strictly: a row that cannot be decoded raises :class:`TaskDataError`
naming it (a read that skipped it would hide exactly the task an operator looks for).
"""

from __future__ import annotations

from dataclasses import dataclass

from relaybox.errors import NotFound
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.tasks.models import Task, TaskEvent, TaskState

MAX_PAGE = 10_000


@dataclass(frozen=True)
class EventPage:
    events: list[TaskEvent]
    next_after: int | None  # pass as ``after_seq`` for the next page; None: this was the last


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE} (got {limit!r})")
    return limit


def get_task(task_id: int) -> Unit[Task]:
    def unit(tx: Tx) -> Task:
        row = tx.fetch_one("task_by_id", {"id": task_id})
        if row is None:
            raise NotFound(f"task {task_id} does not exist")
        return Task.from_row(row)

    return unit


def list_tasks(
    *,
    now: float,
    state: TaskState | None = None,
    late: bool = False,
    thread_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Unit[list[Task]]:
    """Newest first; ``late``: open tasks past a deadline, or nudged (``late``)."""
    _check_limit(limit)

    def unit(tx: Tx) -> list[Task]:
        rows = tx.fetch_all(
            "list_tasks",
            {
                "state": None if state is None else str(state),
                "thread_id": thread_id,
                "late": 1 if late else 0,
                "now": now,
                "before_id": before_id,
                "limit": limit,
            },
        )
        return [Task.from_row(r) for r in rows]

    return unit


def events(task_id: int, *, after_seq: int = 0, limit: int = 100) -> Unit[EventPage]:
    """One page of a task's journal, in sequence order; page on with ``next_after``."""
    _check_limit(limit)
    if after_seq < 0:
        raise ValueError(f"after_seq must be 0 or more (got {after_seq})")

    def unit(tx: Tx) -> EventPage:
        if tx.fetch_one("task_by_id", {"id": task_id}) is None:
            raise NotFound(f"task {task_id} does not exist")
        rows = tx.fetch_all(
            "task_events_page", {"task_id": task_id, "after_seq": after_seq, "limit": limit + 1}
        )
        page = [TaskEvent.from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return EventPage(page, page[-1].seq if more and page else None)

    return unit


@dataclass(frozen=True)
class TaskHealth:
    open: int
    late: int
    timed_out: int  # in the window


def health_counts(now: float, since: float) -> Unit[TaskHealth]:
    def unit(tx: Tx) -> TaskHealth:
        row = tx.fetch_one("health_tasks", {"late_before": now, "since": since}) or {}
        return TaskHealth(
            int(row.get("open") or 0), int(row.get("late") or 0), int(row.get("timed_out") or 0)
        )

    return unit
