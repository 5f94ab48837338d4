"""``relaybox steps ...``: which tool steps ran, which are stuck, and settling the stuck ones."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from relaybox.cli.app import JsonOption, fail, inspected, opened, out, print_json
from relaybox.cli.deliveries import when
from relaybox.jsonvalue import NotJSON, dumps
from relaybox.steps import inspect, transitions
from relaybox.steps.records import StepRecord, StepStatus

steps_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Idempotent tool steps: list, show, resolve the ones needing reconciliation, prune.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(steps_app, name="steps")


def _status(value: str | None) -> StepStatus | None:
    if value is None:
        return None
    try:
        return StepStatus(value)
    except ValueError:
        raise fail(
            f"unknown status {value!r}; one of: {', '.join(s.value for s in StepStatus)}"
        ) from None


def _shown_status(step: StepRecord, now: float) -> str:
    if step.status is StepStatus.RUNNING and step.lease_lapsed(now):
        return "running (lease lapsed)"
    return str(step.status)


@steps_app.command("list")
def list_command(
    ctx: typer.Context,
    needs_reconciliation: Annotated[
        bool,
        typer.Option(
            "--needs-reconciliation",
            help="Only steps that crashed mid-way and are not safe to run again.",
        ),
    ] = False,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    resource: Annotated[str | None, typer.Option(help="Only this resource (user).")] = None,
    correlation: Annotated[str | None, typer.Option(help="Only this correlation id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Steps, newest first."""
    wanted = _status(status)
    with inspected(ctx) as (store, _config):
        rows = store.read_sync(
            inspect.list_steps(
                status=wanted,
                resource_id=resource,
                correlation_id=correlation,
                needs_reconciliation=needs_reconciliation,
                limit=limit,
            )
        )
    now = time.time()
    if as_json:
        print_json(
            [{**s.to_json(), "needs_reconciliation": s.needs_reconciliation(now)} for s in rows]
        )
        return
    if not rows:
        out.print("no steps match")
        return
    table = Table("id", "status", "resource", "step", "tool", "runs", "updated (UTC)", "error")
    for s in rows:
        table.add_row(
            str(s.id),
            _shown_status(s, now),
            escape(s.resource_id),
            escape(s.step_id),
            escape(s.tool),
            str(s.attempts),
            when(s.updated_at),
            escape(f"{s.error_type}: {s.error_message}") if s.error_type else "",
        )
    out.print(table)


@steps_app.command("show")
def show_command(
    ctx: typer.Context,
    step: Annotated[int, typer.Argument(help="Step row id (see `relaybox steps list`).")],
    as_json: JsonOption = False,
) -> None:
    """One step: its intent, key, outcome and every event of its journal."""
    with inspected(ctx) as (store, _config):
        record = store.read_sync(inspect.get_step(step))
        events = store.read_sync(inspect.events_of_step(step))
    now = time.time()
    if as_json:
        print_json(
            {
                **record.to_json(),
                "needs_reconciliation": record.needs_reconciliation(now),
                "events": [e.to_json() for e in events],
            }
        )
        return
    out.print(
        f"[bold]step {record.id}[/]  {_shown_status(record, now)}  {escape(record.step_id)}"
        f"  for {escape(record.resource_id)}"
    )
    out.print(
        f"tool {escape(record.tool)}   intent {record.intent_hash}   generation {record.generation}"
    )
    out.print(f"idempotency key {record.idempotency_key}   correlation {record.correlation_id}")
    out.print(
        f"runs {record.attempts}   retry-safe {'yes' if record.retry_safe else 'no'}   created"
        f" {when(record.created_at)}   finished {when(record.finished_at)}"
        f"   outcome kept until {when(record.expires_at)}"
    )
    if record.lease_owner:
        out.print(f"held by {record.lease_owner} until {when(record.lease_expires_at)}")
    if record.needs_reconciliation(now):
        out.print(
            f"[bold yellow]needs reconciliation:[/] did its side effect happen? Then"
            f" `relaybox steps resolve {record.id} --succeeded --result JSON`; if not,"
            f" `relaybox steps resolve {record.id} --rerun`."
        )
    if record.status is StepStatus.SUCCEEDED:
        out.print(f"result {json.dumps(record.result, ensure_ascii=False)}", markup=False)
    if record.error_type:
        out.print(f"[red]{escape(record.error_type)}:[/] {escape(record.error_message or '')}")
    if record.reply_delivery_ids:
        out.print(f"replies: deliveries {', '.join(map(str, record.reply_delivery_ids))}")
    out.print(f"intent {record.intent_json[:300]}", markup=False)
    table = Table("at (UTC)", "event", "run", "correlation", "by", "detail", title="journal")
    for e in events:
        table.add_row(
            when(e.at),
            e.event,
            "-" if e.attempt is None else str(e.attempt),
            escape(e.correlation_id),
            escape(e.worker or "-"),
            escape((e.detail or "")[:80]),
        )
    out.print(table)


@steps_app.command("resolve")
def resolve_command(
    ctx: typer.Context,
    step: Annotated[int, typer.Argument(help="Step row id.")],
    succeeded: Annotated[
        bool, typer.Option("--succeeded", help="The side effect happened; store --result.")
    ] = False,
    failed: Annotated[
        bool, typer.Option("--failed", help="It failed for good; store --error as its outcome.")
    ] = False,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="It did not happen: let the next run run it again.")
    ] = False,
    result: Annotated[
        str, typer.Option(help="JSON result to replay from now on (with --succeeded).")
    ] = "null",
    error: Annotated[str | None, typer.Option(help="Error message (with --failed).")] = None,
    reason: Annotated[str, typer.Option(help="Why; kept in the step's journal.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Settle a step that needs reconciliation: say what really happened."""
    if succeeded + failed + rerun != 1:
        raise fail("say what happened: exactly one of --succeeded, --failed or --rerun")
    outcome: transitions.Outcome | None = None
    if succeeded:
        try:
            outcome = transitions.Outcome(StepStatus.SUCCEEDED, dumps(json.loads(result)))
        except (ValueError, NotJSON) as bad:
            raise fail(f"--result must be JSON: {bad}") from None
    elif failed:
        if not error or not error.strip():
            raise fail("--failed needs --error 'what went wrong'")
        outcome = transitions.Outcome(StepStatus.FAILED, None, "ResolvedByOperator", error)
    with opened(ctx) as (store, config):
        record = store.run_sync(
            transitions.resolve(
                step, outcome, retention_seconds=config.steps.retention_seconds, reason=reason
            )
        )
    if as_json:
        print_json(record.to_json())
        return
    out.print(
        f"step {record.id} ({record.step_id} for {record.resource_id}) is now {record.status}"
    )


@steps_app.command("prune")
def prune_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Forget step outcomes past their retention (``[steps] retention_seconds``)."""
    with inspected(ctx) if dry_run else opened(ctx) as (store, _config):
        now = time.time()
        due = store.read_sync(inspect.count_expired(now))
        pruned = 0
        if not dry_run:
            while (batch := store.run_sync(transitions.prune_expired(batch_size, now))) > 0:
                pruned += batch
    if as_json:
        print_json({"expired": due, "pruned": pruned, "dry_run": dry_run})
        return
    verb = "would prune" if dry_run else "pruned"
    out.print(f"{verb} {due if dry_run else pruned} expired step outcome(s)")
