"""``relaybox turns ...`` and ``relaybox resume``: agent turns, and resuming the ones a dead
process left behind (docs/turns.md)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from relaybox.cli.app import JsonOption, fail, inspected, opened, out, print_json
from relaybox.cli.deliveries import when
from relaybox.cli.durations import seconds_of
from relaybox.turns import inspect, transitions
from relaybox.turns.records import TurnRecord, TurnStatus

turns_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Agent turns: list, show, give a failed one more attempts.",
    no_args_is_help=True,
)

HandlerOption = Annotated[
    str | None,
    typer.Option(
        "--handler",
        help="The async function resumed turns are handed to, as 'package.module:function'"
        " (default: [turns] handler in relaybox.toml).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(turns_app, name="turns")
    app.command("resume")(resume_command)


def _status(value: str | None) -> TurnStatus | None:
    if value is None:
        return None
    try:
        return TurnStatus(value)
    except ValueError:
        raise fail(
            f"unknown status {value!r}; one of: {', '.join(s.value for s in TurnStatus)}"
        ) from None


def _shown(turn: TurnRecord, now: float) -> str:
    if turn.status is TurnStatus.RUNNING and (turn.lease_expires_at or 0) <= now:
        return "running (lease lapsed)"
    return str(turn.status)


@turns_app.command("list")
def list_command(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    resource: Annotated[str | None, typer.Option(help="Only this resource (user).")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """Turns, newest first."""
    wanted = _status(status)
    with inspected(ctx) as (store, _config):
        rows = store.read_sync(inspect.list_turns(status=wanted, resource_id=resource, limit=limit))
    if as_json:
        print_json([t.to_json() for t in rows])
        return
    if not rows:
        out.print("no turns match" + (" these filters" if status or resource else ""))
        return
    now = time.time()
    table = Table("id", "inbound", "status", "resource", "thread", "attempts", "updated (UTC)")
    for t in rows:
        table.add_row(
            str(t.id),
            str(t.inbound_id),
            _shown(t, now),
            escape(t.resource_id),
            escape(t.thread_id),
            f"{t.attempts}/{t.max_attempts}",
            when(t.updated_at),
        )
    out.print(table)


@turns_app.command("show")
def show_command(
    ctx: typer.Context,
    turn: Annotated[int, typer.Argument(help="Turn id (see `relaybox turns list`).")],
    as_json: JsonOption = False,
) -> None:
    """One turn and every event of its journal."""
    with inspected(ctx) as (store, _config):
        record = store.read_sync(inspect.get_turn(turn))
        events = store.read_sync(inspect.events_of_turn(turn))
    if as_json:
        print_json({**record.to_json(), "events": [e.to_json() for e in events]})
        return
    out.print(
        f"turn {record.id}   {_shown(record, time.time())}   inbound {record.inbound_id}"
        f"   attempts {record.attempts}/{record.max_attempts}",
        markup=False,
    )
    out.print(
        f"resource {record.resource_id}   thread {record.thread_id}   channel {record.channel}"
        f"   correlation {record.correlation_id}",
        markup=False,
    )
    if record.reply_delivery_id is not None:
        out.print(f"reply delivery {record.reply_delivery_id}", markup=False)
    if record.blocked_step:
        out.print(f"blocked on step {record.blocked_step}", markup=False)
    if record.error_type:
        out.print(f"last error {record.error_type}: {record.error_message}", markup=False)
    for e in events:
        who = f" [{e.worker}]" if e.worker else ""
        detail = f" {e.detail}" if e.detail else ""
        out.print(f"  {when(e.at)}  #{e.attempt} {e.event}{who}{detail}", markup=False)


@turns_app.command("retry")
def retry_command(
    ctx: typer.Context,
    turn: Annotated[int, typer.Argument(help="A failed turn's id.")],
    attempts: Annotated[int, typer.Option(min=1, max=100, help="More attempts to allow.")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Give a failed turn more attempts: it becomes pending and the next resume runs it."""
    with opened(ctx) as (store, _config):
        record = store.run_sync(transitions.retry_failed(turn, attempts, "operator"))
    if as_json:
        print_json(record.to_json())
        return
    out.print(
        f"turn {record.id} is pending again ({record.attempts}/{record.max_attempts} attempts)",
        markup=False,
    )


def resume_command(
    ctx: typer.Context,
    handler: HandlerOption = None,
    turn: Annotated[
        list[int] | None,
        typer.Option("--turn", help="Resume this turn now (repeatable), whatever its wait."),
    ] = None,
    handler_timeout: Annotated[
        str | None,
        typer.Option(
            "--handler-timeout",
            help="Cancel a handler call after this long (30s, 5m); the attempt counts as"
            " failed (default: [turns] handler_timeout_seconds).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Hand the turns a dead process left behind to the handler, once (the worker does this
    every [turns] resume_interval_seconds when it has a handler)."""
    from relaybox.client import Relaybox
    from relaybox.errors import RelayboxError
    from relaybox.turns.resume import Resumer, load_handler

    timeout = seconds_of(handler_timeout, "--handler-timeout")
    if timeout is not None and timeout <= 0:
        raise fail(f"--handler-timeout must be more than 0 (got {handler_timeout!r})")
    with opened(ctx) as (store, config):
        spec = handler or config.turns.handler
        if not spec:
            raise fail(
                "no turn handler: pass --handler package.module:function or set [turns] handler"
            )
        try:
            loaded = load_handler(spec)
        except RelayboxError as error:
            raise fail(str(error)) from None
        for turn_id in turn or []:
            store.read_sync(inspect.get_turn(turn_id))  # unknown ids: one error line
        rb = Relaybox(store, config)
        results = asyncio.run(Resumer(rb, loaded, timeout=timeout).run_once(turn or None))
    if as_json:
        print_json([r.to_json() for r in results])
        return
    if not results:
        out.print("nothing to resume")
    for r in results:
        line = f"turn {r.turn_id}: {r.outcome} -> {r.status}"
        out.print(line + (f" ({r.error})" if r.error else ""), markup=False)
