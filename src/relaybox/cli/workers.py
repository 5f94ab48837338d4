"""``relaybox workers``: the worker processes running against this store, from the registry."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from relaybox.cli.app import JsonOption, inspected, out, print_json
from relaybox.cli.deliveries import when
from relaybox.workers.inspect import list_workers


def register(app: typer.Typer) -> None:
    app.command("workers")(workers_command)


def workers_command(
    ctx: typer.Context,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Also workers that stopped heartbeating (dead, not yet aged out)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Live workers: id, host, pid, version, channels, started, last seen, in flight."""
    with inspected(ctx) as (store, config):
        dead_after = config.worker.dead_after_seconds
        rows = store.read_sync(list_workers(dead_after, time.time()))
    shown = [w for w in rows if show_all or w.alive]
    if as_json:
        print_json([w.to_json() for w in shown])
        return
    if not shown:
        out.print("no live workers" + ("" if show_all else " (dead ones: relaybox workers --all)"))
        return
    table = Table(
        "id", "host", "pid", "version", "channels", "started (UTC)", "last seen", "in flight",
        "state", title=f"{sum(w.alive for w in shown)} live worker(s)",
    )  # fmt: skip
    for w in shown:
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            w.version,
            ", ".join(w.channels),
            when(w.started_at),
            f"{w.seen_seconds_ago:.0f}s ago",
            f"{w.in_flight}/{w.concurrency}",
            "alive" if w.alive else f"dead (silent > {dead_after:g}s)",
        )
    out.print(table)
