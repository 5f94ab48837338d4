"""``relaybox deliveries ...``: did this user get a reply, and what happened on the way?"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from relaybox.cli.app import JsonOption, fail, inspected, opened, out, print_json
from relaybox.models import Status
from relaybox.outbox import inspect, transitions

deliveries_app = typer.Typer(
    help="List, inspect, cancel and re-send deliveries.", no_args_is_help=True
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
            str(d.attempts),
            when(d.created_at),
            (d.last_error or "")[:60],
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
    if as_json:
        print_json({**d.to_json(), "attempts": [a.to_json() for a in attempts]})
        return
    out.print(f"[bold]delivery {d.id}[/]  {d.status}  {d.channel}/{d.thread_id} -> {d.recipient}")
    out.print(
        f"reply key {d.reply_key}   correlation {d.correlation_id}   resource {d.resource_id}"
    )
    out.print(
        f"cursor (start_index) {d.start_index}/{d.part_count}   attempts "
        f"{d.attempts}/{d.max_attempts}   created {when(d.created_at)}   "
        f"finished {when(d.finished_at)}"
    )
    if d.expires_at:
        out.print(f"expires {when(d.expires_at)}")
    if d.lease_owner:
        out.print(
            f"leased by {d.lease_owner} (epoch {d.lease_epoch}) until {when(d.lease_expires_at)}"
        )
    if d.last_error:
        out.print(f"[red]last error:[/] {d.last_error}")
    parts = Table("#", "guid", "outcome", "message id", "sent (UTC)", "text", title="parts")
    for p in d.parts:
        parts.add_row(
            str(p.index + 1),
            p.guid,
            p.outcome or "-",
            p.transport_message_id or "-",
            when(p.sent_at),
            p.body[:50],
        )
    out.print(parts)
    table = Table("at (UTC)", "run", "part", "worker", "outcome", "ms", "error", title="attempts")
    for a in attempts:
        table.add_row(
            when(a.started_at),
            str(a.attempt),
            "-" if a.part_index is None else str(a.part_index + 1),
            a.worker_id,
            a.outcome,
            "-" if a.latency_ms is None else f"{a.latency_ms:.1f}",
            (a.error or "")[:70],
        )
    out.print(table)


@deliveries_app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    reason: Annotated[str, typer.Option(help="Why; kept as the delivery's last error.")] = (
        "cancelled by operator"
    ),
    as_json: JsonOption = False,
) -> None:
    """Cancel a queued delivery (a sending one stops before its next part)."""
    with opened(ctx) as (store, _config):
        d = store.run_sync(transitions.cancel(delivery_id, reason))
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
    """Send a failed, expired or parked (unknown) delivery again, from its cursor."""
    _requeue(ctx, delivery_id, skip=0, reason="retried by operator", as_json=as_json)


@deliveries_app.command("resolve")
def resolve_command(
    ctx: typer.Context,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    arrived: Annotated[
        bool,
        typer.Option(
            "--arrived/--not-arrived", help="Whether the ambiguous part reached the user."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Settle a parked (unknown) delivery: did its ambiguous part arrive? Then continue."""
    with inspected(ctx) as (store, _config):
        current = store.read_sync(inspect.get_delivery(delivery_id))
    if current.status is not Status.UNKNOWN:
        raise fail(f"delivery {delivery_id} is {current.status}, not unknown; nothing to resolve")
    reason = "operator: ambiguous part " + ("arrived" if arrived else "did not arrive")
    _requeue(ctx, delivery_id, skip=1 if arrived else 0, reason=reason, as_json=as_json)


def _requeue(
    ctx: typer.Context, delivery_id: int, *, skip: int, reason: str, as_json: bool
) -> None:
    with opened(ctx) as (store, _config):
        d = store.run_sync(
            transitions.requeue(
                delivery_id, skip_parts=skip, reason=f"{reason} at {time.time():.0f}"
            )
        )
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
