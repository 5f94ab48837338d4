"""``relaybox tasks ...``: which agent tasks are open, late or ended, their journal, cancel."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from relaybox.cli.app import JsonOption, fail, inspected, opened, out, print_json
from relaybox.cli.deliveries import when
from relaybox.errors import InvalidReply
from relaybox.outbox.enqueue import build_request
from relaybox.tasks import TaskState, inspect, transitions
from relaybox.tasks.models import Task

MAX_ID = 2**63 - 1  # the largest id either store can hold

tasks_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Agent task contracts: list, show, journal, cancel.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(tasks_app, name="tasks")


def _state(value: str | None) -> TaskState | None:
    if value is None:
        return None
    try:
        return TaskState(value)
    except ValueError:
        raise fail(
            f"unknown state {value!r}; one of: {', '.join(s.value for s in TaskState)}"
        ) from None


def _due(task: Task, now: float) -> str:
    if task.next_due is None:
        return "-"
    seconds = task.next_due - now
    return f"in {seconds:.0f}s" if seconds >= 0 else f"{-seconds:.0f}s ago"


@tasks_app.command("list")
def list_command(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    late: Annotated[
        bool, typer.Option("--late", help="Only open tasks past a deadline or nudged.")
    ] = False,
    thread: Annotated[str | None, typer.Option(help="Only this conversation thread.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Tasks, newest first."""
    wanted = _state(state)
    now = time.time()
    with inspected(ctx) as (store, _config):
        tasks = store.read_sync(
            inspect.list_tasks(now=now, state=wanted, late=late, thread_id=thread, limit=limit)
        )
    if as_json:
        print_json([{**t.to_json(), "late": t.late(now)} for t in tasks])
        return
    if not tasks:
        out.print("no tasks match" + (" these filters" if state or late or thread else ""))
        return
    table = Table("id", "state", "channel/thread", "summary", "nudges", "next deadline", "started")
    for t in tasks:
        table.add_row(
            str(t.id),
            str(t.state) + (" (late)" if t.late(now) and t.state != TaskState.LATE else ""),
            escape(f"{t.channel}/{t.thread_id}"),
            escape(t.summary[:50]),
            str(t.nudges),
            _due(t, now),
            when(t.created_at),
        )
    out.print(table)


@tasks_app.command("show")
def show_command(
    ctx: typer.Context,
    task_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, help="Task id (see `relaybox tasks list`).")
    ],
    as_json: JsonOption = False,
) -> None:
    """One task: its contract, deadlines, messages and outcome."""
    now = time.time()
    with inspected(ctx) as (store, _config):
        task = store.read_sync(inspect.get_task(task_id))
    if as_json:
        print_json({**task.to_json(), "late": task.late(now)})
        return
    out.print(f"[bold]task {task.id}[/]  {task.state}  {escape(task.summary)}")
    rows = [
        ("conversation", f"{task.channel}/{task.thread_id} to {task.recipient}"),
        ("correlation", task.correlation_id),
        (
            "contract",
            f"ack {task.ack_within:g}s, progress every {task.progress_every:g}s,"
            f" finish {task.finish_within:g}s",
        ),
        ("acked", when(task.acked_at) + (" (automatic)" if task.auto_acked else "")),
        ("next deadline", _due(task, now)),
        ("nudges", str(task.nudges)),
        ("result delivery", str(task.result_delivery_id or "-")),
        ("notice delivery", str(task.notice_delivery_id or "-")),
        ("error", f"{task.error_type}: {task.error}" if task.error_type else "-"),
        ("cancel reason", task.cancel_reason or "-"),
        ("started", when(task.created_at)),
        ("finished", when(task.finished_at)),
        ("journal", f"{task.last_seq} events (relaybox tasks events {task.id})"),
    ]
    for label, value in rows:
        out.print(f"  {label:<16} {escape(value)}")


@tasks_app.command("events")
def events_command(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="Task id.")],
    after: Annotated[
        int, typer.Option(min=0, max=MAX_ID, help="Start after this sequence number.")
    ] = 0,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="Events per page (see --all).")
    ] = 100,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Every event, page after page (no cap).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The task's journal, in sequence order, one page at a time (or --all)."""
    collected = []
    next_after: int | None = after
    with inspected(ctx) as (store, _config):
        while next_after is not None:
            page = store.read_sync(inspect.events(task_id, after_seq=next_after, limit=limit))
            collected += page.events
            next_after = page.next_after
            if not all_pages:
                break
    if as_json:
        print_json({"events": [e.to_json() for e in collected], "next_after": next_after})
        return
    table = Table("seq", "at (UTC)", "kind", "actor", "payload")
    for e in collected:
        table.add_row(
            str(e.seq), when(e.at), str(e.kind), escape(e.actor), escape(_compact(e.payload))
        )
    out.print(table)
    if next_after is not None:
        out.print(f"more: relaybox tasks events {task_id} --after {next_after}")


def _compact(payload: dict[str, object]) -> str:
    import json

    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 100 else text[:99] + "…"


@tasks_app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="Task id.")],
    reason: Annotated[str, typer.Option("--reason", help="Told to the user as is, and stored.")],
    as_json: JsonOption = False,
) -> None:
    """Cancel an open task: the user is told REASON; 'already_finished' if it ended first."""
    if not reason.strip():
        raise fail("--reason must not be empty: it is what the user is told")
    with opened(ctx) as (store, config):
        task = store.read_sync(inspect.get_task(task_id))
        channel = config.channels.get(task.channel)
        if channel is not None:
            try:
                build_request(channel, thread_id="t", recipient="r", parts=[reason])
            except InvalidReply as error:
                raise fail(f"--reason: {error}") from None
        outcome = store.run_sync(
            transitions.cancel(task_id, reason, "operator", time.time(), config.channels)
        )
    if as_json:
        print_json({"result": str(outcome.result), "task": outcome.task.to_json()})
        return
    if outcome.result == "cancelled":
        out.print(f"cancelled task {task_id}; the user is told: {escape(reason)}")
    else:
        out.print(f"already_finished: task {task_id} is {outcome.task.state}; nothing changed")
