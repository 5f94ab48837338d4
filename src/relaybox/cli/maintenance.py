"""``relaybox gaps | health | prune``: silent loss, alerting, retention (spec C4, C8, C9)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from relaybox import retention
from relaybox.cli.app import JsonOption, err, fail, globals_of, inspected, opened, out, print_json
from relaybox.cli.deliveries import when
from relaybox.cli.durations import seconds_of
from relaybox.cli.inbound import inbound_table
from relaybox.errors import ConfigError
from relaybox.health import Check, health
from relaybox.inbound import find_gaps
from relaybox.store import Store
from relaybox.turns.inspect import turns_of_inbound
from relaybox.turns.records import TurnRecord

UNHEALTHY_EXIT = 2  # 1 is "could not even ask" (bad config, store unreachable)


def register(app: typer.Typer) -> None:
    app.command("gaps")(gaps_command)
    app.command("health")(health_command)
    app.command("prune")(prune_command)


def gaps_command(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(help="Unanswered for at least this long: 90s, 5m, 1h."),
    ] = "5m",
    since: Annotated[
        str | None,
        typer.Option(help="Only messages received this recently: 1h, 7d."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Inbound messages with no delivered reply and no "no reply needed" mark: silent loss."""
    older = seconds_of(older_than, "--older-than") or 0.0
    since_seconds = seconds_of(since, "--since")
    now = time.time()
    unit = find_gaps(
        older,
        since=None if since_seconds is None else now - since_seconds,
        limit=limit,
        now=now,
    )
    with inspected(ctx) as (store, _config):
        rows = store.read_sync(unit)
        turns = store.read_sync(turns_of_inbound([m.id for m in rows]))
    if as_json:
        print_json([{**m.to_json(), "turn": _turn_json(turns.get(m.id))} for m in rows])
        return
    if not rows:
        out.print("no gaps: every inbound message was answered or marked 'no reply needed'")
        return
    title = f"{len(rows)} inbound message(s) without a reply"
    out.print(inbound_table(rows, title=title, turns=turns))
    out.print("see what happened: relaybox trace inbound:<id>")


def _turn_json(turn: TurnRecord | None) -> dict[str, object] | None:
    """What ``gaps --json`` says about a message's turn (None: the message has no turn)."""
    if turn is None:
        return None
    return {
        "id": turn.id,
        "status": str(turn.status),
        "attempts": turn.attempts,
        "max_attempts": turn.max_attempts,
        "blocked_step": turn.blocked_step,
        "error_type": turn.error_type,
    }


def health_command(
    ctx: typer.Context,
    window: Annotated[
        str | None,
        typer.Option(help="Look back this far for failure rate and gaps."),
    ] = None,
    max_queue_depth: Annotated[int | None, typer.Option(min=0)] = None,
    max_oldest_queued: Annotated[str | None, typer.Option(help="e.g. 10m")] = None,
    max_failure_rate: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    max_unknown: Annotated[int | None, typer.Option(min=0)] = None,
    max_gaps: Annotated[int | None, typer.Option(min=0)] = None,
    gap_age: Annotated[
        str | None,
        typer.Option(help="A message is a gap after this long."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue depth and age, failures, parked deliveries, gaps. Exits 2 past a threshold.

    Thresholds come from [health] in relaybox.toml; options override them. An invalid
    relaybox.toml earns a warning and an answer by the default thresholds, like every
    inspection command, but never "healthy": the ``config`` check fails, so a probe notices.
    """
    try:
        globals_of(ctx).config()
        broken_config = None
    except ConfigError as error:
        broken_config = str(error)
    overrides: dict[str, float | None] = {
        "window_seconds": seconds_of(window, "--window"),
        "max_queue_depth": max_queue_depth,
        "max_oldest_queued_seconds": seconds_of(max_oldest_queued, "--max-oldest-queued"),
        "max_failure_rate": max_failure_rate,
        "max_unknown": max_unknown,
        "max_gaps": max_gaps,
        "gap_age_seconds": seconds_of(gap_age, "--gap-age"),
    }
    with inspected(ctx) as (store, config):
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        limits = replace(config.health, **given)
        if limits.window_seconds <= 0:
            raise fail("--window must be greater than 0")
        report = store.read_sync(health(limits, dead_after=config.worker.dead_after_seconds))
    if broken_config is not None:
        report = report.with_check(
            Check(
                "config",
                1,
                0,
                False,
                "relaybox.toml could not be used: judged by the default thresholds",
                broken_config,
            )
        )
    if as_json:
        print_json(report.to_json())
    else:
        table = Table("check", "value", "limit", "", "meaning")
        for c in report.checks:
            mark = "[green]ok[/]" if c.ok else "[bold red]FAIL[/]"
            meaning = escape(c.help if c.detail is None else f"{c.help} ({c.detail})")
            table.add_row(c.name, f"{c.value:g}", f"{c.limit:g}", mark, meaning)
        out.print(table)
        m = report.metrics
        out.print(
            f"last {m['window_seconds']:g}s: {m['delivered']} delivered, {m['failed']} failed,"
            f" {m['expired']} expired, {m['cancelled']} cancelled; {m['job_failures']}"
            " failure records"
        )
        out.print("healthy" if report.ok else "[bold red]unhealthy[/]")
    if not report.ok:
        raise typer.Exit(code=UNHEALTHY_EXIT)


def prune_command(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Prune every table older than this (default: [retention] ages).",
        ),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Only this table ({', '.join(t.name for t in retention.TARGETS)});"
            " repeat for several."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Rows per delete transaction.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete old history in small batches.

    Never deletes queued, sending or parked deliveries. Unanswered inbound messages (what
    ``relaybox gaps`` lists) are kept until they are answered, marked "no reply needed", or
    older than [retention] unanswered_inbound_days (default 90); --older-than does not apply to
    them unless you name --table unanswered_inbound.
    """
    older = seconds_of(older_than, "--older-than")
    with inspected(ctx) if dry_run else opened(ctx) as (store, config):
        try:
            plans = retention.plan(
                config.retention,
                older_than_days=None if older is None else older / retention.DAY,
                tables=table,
            )
        except ValueError as error:
            raise fail(str(error)) from None
        size = batch_size or config.retention.batch_size
        totals = {p.target.name: store.read_sync(retention.count(p)) for p in plans}
        if dry_run:
            results = [
                retention.PruneResult(p.target.name, p.cutoff, totals[p.target.name], 0, True)
                for p in plans
            ]
        else:
            results = _prune_with_progress(store, plans, totals, size, show=not as_json)
    if as_json:
        print_json([r.to_json() for r in results])
        return
    verb = "would delete" if dry_run else "deleted"
    summary = Table("table", "older than (UTC)", verb, "batches")
    for r in results:
        summary.add_row(r.table, when(r.cutoff), str(r.deleted), str(r.batches))
    out.print(summary)
    if not plans:
        out.print("nothing to prune: every table is kept forever ([retention] ages are 0)")


def _prune_with_progress(
    store: Store,
    plans: list[retention.PrunePlan],
    totals: dict[str, int],
    batch_size: int,
    *,
    show: bool,
) -> list[retention.PruneResult]:
    results = []
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not show,
        transient=False,
    ) as progress:
        for p in plans:
            task = progress.add_task(p.target.name, total=totals[p.target.name] or None)

            def advance(deleted: int, task_id: TaskID = task) -> None:
                progress.advance(task_id, deleted)

            result = retention.prune_sync(store, p, batch_size, advance)
            progress.update(task, total=result.deleted, completed=result.deleted)
            results.append(result)
    return results
