"""``relaybox inbound``: did this user get a reply? Inbound messages and what became of them."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from relaybox.cli.app import JsonOption, fail, inspected, out, print_json
from relaybox.cli.deliveries import when
from relaybox.cli.durations import seconds_of
from relaybox.inbound import InboundMessage, InboundState, get_inbound, list_inbound
from relaybox.turns.records import TurnRecord

inbound_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Inbound messages and whether they were answered.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(inbound_app, name="inbound")


@inbound_app.command("list")
def list_command(
    ctx: typer.Context,
    thread: Annotated[str | None, typer.Option(help="Only this thread (chat).")] = None,
    resource: Annotated[str | None, typer.Option(help="Only this resource (user).")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    state: Annotated[
        str | None,
        typer.Option(help=f"Only this state: {', '.join(s.value for s in InboundState)}."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only this recent: 15m, 1h, 7d.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Inbound messages, newest first, with the state their replies reached."""
    wanted = None
    if state is not None:
        try:
            wanted = InboundState(state)
        except ValueError:
            raise fail(
                f"unknown state {state!r}; one of: {', '.join(s.value for s in InboundState)}"
            ) from None
    since_seconds = seconds_of(since, "--since")
    unit = list_inbound(
        since=None if since_seconds is None else time.time() - since_seconds,
        channel=channel,
        thread_id=thread,
        resource_id=resource,
        state=wanted,
        limit=limit,
    )
    with inspected(ctx) as (store, _config):
        rows = store.read_sync(unit)
    if as_json:
        print_json([m.to_json() for m in rows])
        return
    if not rows:
        out.print("no inbound messages match")
        return
    out.print(inbound_table(rows))


@inbound_app.command("show")
def show_command(
    ctx: typer.Context,
    inbound_id: Annotated[int, typer.Argument(help="Inbound message id.")],
    as_json: JsonOption = False,
) -> None:
    """One inbound message and its replies' state (``relaybox trace inbound:ID`` for the story)."""
    with inspected(ctx) as (store, _config):
        m = store.read_sync(get_inbound(inbound_id))
    if as_json:
        print_json(m.to_json())
        return
    out.print(f"[bold]inbound {m.id}[/]  {m.state}  {m.channel}/{m.thread_id} from {m.resource_id}")
    out.print(f"message id {m.external_id}   correlation {m.correlation_id}", markup=False)
    out.print(
        f"received {when(m.received_at)}   handled {when(m.handled_at)}"
        f"   replied {when(m.replied_at)}"
    )
    out.print(
        f"replies {m.replies}: {m.delivered_replies} delivered, {m.pending_replies} pending,"
        f" {m.failed_replies} failed"
    )
    if m.duplicate_count:
        out.print(
            f"received again {m.duplicate_count}x (last {when(m.last_duplicate_at)});"
            " not processed twice"
        )
    if m.note:
        out.print(f"note: {m.note}", markup=False)
    if m.text is not None:
        out.print(f"text: {m.text}", markup=False)


def inbound_table(
    rows: list[InboundMessage],
    title: str | None = None,
    turns: dict[int, TurnRecord] | None = None,
) -> Table:
    """Inbound messages; with ``turns``, a column with each message's turn (``gaps``)."""
    columns = ["id", "received (UTC)", "state", "channel", "thread", "from", "replies", "text"]
    if turns is not None:
        columns.insert(3, "turn")
    table = Table(*columns, title=title)
    for m in rows:
        turn: list[str] = []
        if turns is not None:
            t = turns.get(m.id)
            turn = ["-" if t is None else f"{t.id} {t.status} {t.attempts}/{t.max_attempts}"]
        table.add_row(
            str(m.id),
            when(m.received_at),
            str(m.state),
            *turn,
            m.channel,
            m.thread_id,
            m.resource_id,
            f"{m.delivered_replies}/{m.replies}",
            " ".join((m.text or "").split())[:50],
        )
    return table
