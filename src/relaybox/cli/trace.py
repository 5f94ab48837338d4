"""``relaybox trace``: "this user says they never got a reply — what happened?" (spec C4)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from relaybox.cli.app import JsonOption, inspected, out, print_json
from relaybox.cli.deliveries import when
from relaybox.trace import trace


def register(app: typer.Typer) -> None:
    app.command("trace")(trace_command)


def trace_command(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            help="inbound:<id>, delivery:<id>, task:<id>, a correlation id, or a bare id when"
            " only one inbound message or delivery has it."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Everything that happened for one inbound message, delivery or correlation id, in order."""
    with inspected(ctx) as (store, _config):
        result = store.read_sync(trace(ref))
    if as_json:
        print_json(result.to_json())
        return
    out.print(f"[bold]trace of {result.subject}[/]  correlation {result.correlation_id}")
    table = Table("#", "at (UTC)", "source", "event", "what happened")
    for n, event in enumerate(result.events, 1):
        table.add_row(str(n), when(event.at), event.source, event.kind, event.summary)
    out.print(table)
