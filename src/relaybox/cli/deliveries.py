"""``relaybox deliveries ...``: did this user get a reply, and what happened on the way?"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from relaybox.cli.app import JsonOption, fail, inspected, opened, out, print_json
from relaybox.models import Delivery, Status
from relaybox.outbox import inspect, transitions
from relaybox.outbox.events import operator

deliveries_app = typer.Typer(
    rich_markup_mode="markdown",
    help="List, inspect, cancel and re-send deliveries.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(deliveries_app, name="deliveries")


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _status(value: str | None) -> Status | None:
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError:
        raise fail(
            f"unknown status {value!r}; one of: {', '.join(s.value for s in Status)}"
        ) from None


@deliveries_app.command("list")
def list_command(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    thread: Annotated[str | None, typer.Option(help="Only this thread id.")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Deliveries, newest first."""
    wanted = _status(status)
    with inspected(ctx) as (store, _config):
        rows = store.read_sync(
            inspect.list_deliveries(status=wanted, thread_id=thread, channel=channel, limit=limit)
        )
    if as_json:
        print_json([d.to_json() for d in rows])
        return
    if not rows:
        out.print("no deliveries match" + (" these filters" if status or thread or channel else ""))
        return
    table = Table(
        "id", "status", "channel", "thread", "to", "sent", "attempts", "created (UTC)", "last error"
    )
    for d in rows:
        table.add_row(
            str(d.id),
            str(d.status),
            d.channel,
            d.thread_id,
            d.recipient,
            f"{d.start_index}/{d.part_count}",
            f"{d.attempts}/{d.max_attempts}" + (f" (run {d.run})" if d.runs_before else ""),
            when(d.created_at),
            d.last_error or "",
        )
    out.print(table)


@deliveries_app.command("show")
def show_command(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    as_json: JsonOption = False,
) -> None:
    """One delivery: its parts and GUIDs, cursor, status and every attempt."""
    with inspected(ctx) as (store, _config):
        d = store.read_sync(inspect.get_delivery(delivery_id))
        attempts = store.read_sync(inspect.attempts_of(delivery_id))
        events = store.read_sync(inspect.events_of(delivery_id))
    if as_json:
        print_json(
            {
                **d.to_json(),
                "attempt_log": [a.to_json() for a in attempts],
                "events": [e.to_json() for e in events],
            }
        )
        return
    out.print(
        f"[bold]delivery {d.id}[/]  {d.status}  {escape(d.channel)}/{escape(d.thread_id)}"
        f" -> {escape(d.recipient)}"
    )
    out.print(
        f"reply key {d.reply_key}   correlation {d.correlation_id}   resource {d.resource_id}",
        markup=False,
    )
    out.print(
        f"cursor (start_index) {d.start_index}/{d.part_count}   attempts "
        f"{d.attempts}/{d.max_attempts} (run {d.run})   created {when(d.created_at)}   "
        f"finished {when(d.finished_at)}"
    )
    if d.expires_at:
        out.print(f"expires {when(d.expires_at)}")
    if d.lease_owner:
        out.print(
            f"leased by {escape(d.lease_owner)} (epoch {d.lease_epoch}) until"
            f" {when(d.lease_expires_at)}"
        )
    if d.last_error:
        out.print(f"[red]last error:[/] {escape(d.last_error)}")
    parts = Table("#", "guid", "outcome", "message id", "sent (UTC)", "text", title="parts")
    for p in d.parts:
        parts.add_row(
            str(p.index + 1),
            p.guid,
            p.outcome or "-",
            p.transport_message_id or "-",
            when(p.sent_at),
            Text(p.body[:200]),
        )
    out.print(parts)
    table = Table("at (UTC)", "run", "part", "worker", "outcome", "ms", "error", title="attempts")
    for a in attempts:
        table.add_row(
            when(a.started_at),
            str(a.attempt),
            "-" if a.part_index is None else str(a.part_index + 1),
            Text(a.worker_id),
            a.outcome,
            "-" if a.latency_ms is None else f"{a.latency_ms:.1f}",
            Text(a.error or ""),
        )
    out.print(table if attempts else "no attempts yet")
    if events:
        log = Table("at (UTC)", "event", "by", "run", "status", "detail", title="events")
        for e in events:
            by = e.actor + (f" (1 of {e.action_count})" if e.action_count > 1 else "")
            change = f"{e.from_status or '?'} -> {e.to_status or '?'}"
            run = "-" if e.run is None else str(e.run)
            log.add_row(when(e.at), e.kind, Text(by), run, change, Text(e.detail or ""))
        out.print(log)


@deliveries_app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    reason: Annotated[str, typer.Option(help="Why; kept as the delivery's last error.")] = (
        "cancelled by operator"
    ),
    as_json: JsonOption = False,
) -> None:
    """Cancel a queued delivery (a sending one stops before its next part).

    Recorded as a ``cancelled`` event (who, when, why) shown by ``relaybox trace``.
    """
    with opened(ctx) as (store, _config):
        d = store.run_sync(transitions.cancel(delivery_id, reason, by=operator()))
    if as_json:
        print_json(d.to_json())
        return
    out.print(f"delivery {d.id} cancelled ({d.start_index}/{d.part_count} parts had been sent)")


@deliveries_app.command("retry")
def retry_command(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    as_json: JsonOption = False,
) -> None:
    """Send a failed, expired or parked (unknown) delivery again, from its cursor.

    The attempt budget starts again; run numbers keep counting. Recorded as a ``retried``
    event shown by ``relaybox trace``.
    """
    with opened(ctx) as (store, _config):
        d = store.run_sync(transitions.retry(delivery_id, by=operator()))
    _print_requeued(d, as_json)


@deliveries_app.command("resolve")
def resolve_command(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    arrived: Annotated[
        bool | None,
        typer.Option(
            "--arrived/--not-arrived",
            help="Whether the ambiguous part reached the user (required: say which).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Settle a parked (unknown) delivery: did its ambiguous part arrive? Then continue.

    Recorded as a ``resolved`` event shown by ``relaybox trace``.
    """
    if arrived is None:
        raise fail(
            "say whether the ambiguous part reached the user: --arrived (it did: continue"
            " with the next part) or --not-arrived (it did not: send it again, same GUID)"
        )
    with opened(ctx) as (store, _config):
        d = store.run_sync(transitions.resolve(delivery_id, arrived=arrived, by=operator()))
    _print_requeued(d, as_json)


def _print_requeued(d: Delivery, as_json: bool) -> None:
    if as_json:
        print_json(d.to_json())
        return
    out.print(f"delivery {d.id} is {d.status} (cursor {d.start_index}/{d.part_count})")


# -- bulk actions: everything matching a filter -------------------------------------------

StatusOpt = Annotated[str | None, typer.Option("--status", help="Only this status.")]
ChannelOpt = Annotated[str | None, typer.Option("--channel", help="Only this channel.")]
ThreadOpt = Annotated[str | None, typer.Option("--thread", help="Only this thread id.")]
CorrelationOpt = Annotated[
    str | None, typer.Option("--correlation", help="Only this correlation id.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Enqueued at or after: a duration ago (2h) or ISO 8601 (UTC)."),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Enqueued before: a duration ago or ISO 8601.")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Only count what would change; change nothing.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@deliveries_app.command("retry-all")
def retry_all_command(
    ctx: typer.Context,
    status: StatusOpt = None,
    channel: ChannelOpt = None,
    thread: ThreadOpt = None,
    correlation: CorrelationOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    as_json: JsonOption = False,
) -> None:
    """Send again every failed, expired or parked delivery matching the filters."""
    _bulk(ctx, "retry", locals())


@deliveries_app.command("cancel-all")
def cancel_all_command(
    ctx: typer.Context,
    status: StatusOpt = None,
    channel: ChannelOpt = None,
    thread: ThreadOpt = None,
    correlation: CorrelationOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    as_json: JsonOption = False,
) -> None:
    """Cancel every queued or sending delivery matching the filters."""
    _bulk(ctx, "cancel", locals())


def _bulk(ctx: typer.Context, action_name: str, options: dict[str, object]) -> None:
    import getpass
    import sys

    from rich.progress import Progress

    from relaybox.console.bulk import parse_action, preview, run_bulk
    from relaybox.console.filters import DeliveryFilter
    from relaybox.errors import RelayboxError

    fields = {
        key: str(options[name])
        for key, name in (
            ("status", "status"),
            ("channel", "channel"),
            ("thread", "thread"),
            ("correlation", "correlation"),
            ("since", "since"),
            ("until", "until"),
        )
        if options[name] is not None
    }
    for key, value in fields.items():
        if not value.strip():
            # An empty filter would match everything: a bulk action must never widen by typo.
            raise fail(f"--{key} must not be empty; leave it out to not filter by {key}")
    as_json = bool(options["as_json"])
    try:
        where = DeliveryFilter.parse(fields)
        action = parse_action(action_name)
    except RelayboxError as error:
        raise fail(str(error)) from None
    who = f"cli:{getpass.getuser()}"
    with opened(ctx) as (store, _config):
        count = preview(store, action, where)
        if options["dry_run"] or count == 0:
            result = run_bulk(store, action, where, who=who, dry_run=True)
            if as_json:
                print_json(result.to_json())
            else:
                out.print(f"{count} deliveries match {where.describe()!r}; would {action} them")
            return
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise fail(f"{action} {count} deliveries? add --yes to confirm (or --dry-run)")
            if not typer.confirm(f"{action} {count} deliveries matching {where.describe()!r}?"):
                raise fail("nothing changed")
        if out.is_terminal and not as_json:
            with Progress(console=out, transient=True) as bar:
                task = bar.add_task(f"{action}", total=count)
                result = run_bulk(
                    store,
                    action,
                    where,
                    who=who,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        else:
            result = run_bulk(store, action, where, who=who)
    if as_json:
        print_json(result.to_json())
        return
    skipped = f"; {result.skipped} had changed meanwhile" if result.skipped else ""
    out.print(f"{action}: {result.changed} of {result.matched} deliveries{skipped}")
