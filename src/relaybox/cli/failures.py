"""``relaybox failures``: which jobs failed, where, and with what payload (spec C3)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from relaybox.audit.query import GROUP_KEYS, FailureFilter, get_failure, group_failures
from relaybox.audit.query import list_failures as list_unit
from relaybox.cli.app import JsonOption, fail, inspected, out, print_json
from relaybox.cli.deliveries import when
from relaybox.cli.durations import seconds_of

failures_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Failed jobs (deliveries, agent runs, tool steps, your code): list, group, show.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(failures_app, name="failures")


@failures_app.callback()
def failures_command(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Only this recent: 90s, 15m, 1h, 7d."),
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue (e.g. deliveries).")] = None,
    job: Annotated[str | None, typer.Option(help="Only this job id.")] = None,
    stage: Annotated[str | None, typer.Option(help="Only this stage (e.g. send).")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    thread: Annotated[str | None, typer.Option(help="Only this thread (chat).")] = None,
    resource: Annotated[str | None, typer.Option(help="Only this resource (user).")] = None,
    error_type: Annotated[str | None, typer.Option(help="Only this error type.")] = None,
    correlation: Annotated[str | None, typer.Option(help="Only this correlation id.")] = None,
    terminal: Annotated[
        bool, typer.Option("--terminal", help="Only failures that ended their job.")
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(help=f"Count per {' | '.join(GROUP_KEYS)} instead of listing."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Failures, newest first; with --by, counted per chat, queue, stage, channel, ..."""
    if ctx.invoked_subcommand is not None:
        return
    if by is not None and by not in GROUP_KEYS:
        raise fail(f"--by must be one of: {', '.join(GROUP_KEYS)} (got {by!r})")
    since_seconds = seconds_of(since, "--since")
    where = FailureFilter(
        since=None if since_seconds is None else time.time() - since_seconds,
        queue=queue,
        job_id=job,
        stage=stage,
        channel=channel,
        thread_id=thread,
        resource_id=resource,
        correlation_id=correlation,
        error_type=error_type,
        terminal=True if terminal else None,
    )
    with inspected(ctx) as (store, _config):
        if by is not None:
            groups = store.read_sync(group_failures(where, by, limit))
        else:
            rows = store.read_sync(list_unit(where, limit))
    if by is not None:
        if as_json:
            print_json([g.to_json() for g in groups])
            return
        if not groups:
            out.print("no failures match")
            return
        table = Table(by, "failures", "jobs", "first (UTC)", "last (UTC)")
        for g in groups:
            table.add_row(
                "-" if g.key is None else g.key,
                str(g.failures),
                str(g.jobs),
                when(g.first_at),
                when(g.last_at),
            )
        out.print(table)
        return
    if as_json:
        print_json([f.to_json() for f in rows])
        return
    if not rows:
        out.print("no failures match")
        return
    table = Table(
        "id", "at (UTC)", "queue", "stage", "job", "channel", "thread", "error", "try", "message"
    )
    for f in rows:
        table.add_row(
            str(f.id),
            when(f.created_at),
            f.queue,
            f.stage or "-",
            f.job_id or "-",
            f.channel or "-",
            f.thread_id or "-",
            f.error_type + ("" if f.terminal else " (retried)"),
            "-" if f.attempt is None else str(f.attempt),
            Text(" ".join(f.message.split())),  # the terminal wraps it; nothing is cut
        )
    out.print(table)


@failures_app.command("show")
def show_command(
    ctx: typer.Context,
    failure_id: Annotated[int, typer.Argument(help="Failure id.")],
    payload_only: Annotated[
        bool, typer.Option("--payload", help="Print only the payload, as stored (to reproduce).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """One failure in full: error, traceback, and the payload that triggered it."""
    with inspected(ctx) as (store, _config):
        f = store.read_sync(get_failure(failure_id))
    if payload_only:
        sys.stdout.write((f.payload or "") + "\n")
        return
    if as_json:
        data = f.to_json()
        if f.payload is not None and f.payload_kind == "json" and not f.payload_truncated:
            data["payload"] = json.loads(f.payload)  # the payload itself, not a string of JSON
        print_json(data)
        return
    out.print(f"[bold]failure {f.id}[/]  {when(f.created_at)} UTC  {f.error_type}")
    fields = [
        ("queue", f.queue),
        ("job", f.job_id),
        ("stage", f.stage),
        ("channel", f.channel),
        ("thread", f.thread_id),
        ("resource", f.resource_id),
        ("correlation", f.correlation_id),
        ("attempt", f.attempt),
        ("ended the job", "yes" if f.terminal else "no (retried)"),
        ("worker", f.worker_id),
    ]
    for name, value in fields:
        if value is not None:
            out.print(f"{name:>14}: {value}", markup=False)
    out.print(f"{'message':>14}: {f.message}", markup=False)
    if f.traceback:
        out.print("traceback:", style="bold")
        out.print(f.traceback.rstrip(), markup=False)
    if f.payload is None and f.payload_ref is None:
        out.print("no payload recorded")
        return
    size = f"{f.payload_size} bytes, sha256 {f.payload_sha256}"
    cut = " (truncated; the full payload is not stored)" if f.payload_truncated else ""
    out.print(f"payload ({f.payload_kind}, {size}){cut}:", style="bold")
    if f.payload_ref:
        out.print(f"stored at: {f.payload_ref}", markup=False)
    if f.payload is not None:
        out.print(_pretty(f.payload, f.payload_kind, f.payload_truncated), markup=False)


def _pretty(payload: str, kind: str | None, truncated: bool) -> str:
    if kind != "json" or truncated:
        return payload
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload
