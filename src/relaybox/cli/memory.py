"""``relaybox memory ...``: what the agent remembers about a person (the admin view)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from relaybox.cli.app import JsonOption, fail, inspected, opened, out, print_json
from relaybox.cli.deliveries import when
from relaybox.memory import admin

memory_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Per-user memory, as an operator sees it: who has memory, and what it holds.",
    no_args_is_help=True,
)

ResourceOption = Annotated[
    str, typer.Option("--resource", help="The person (resource id, e.g. the sender address).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(memory_app, name="memory")


@memory_app.command("resources")
def resources_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, most recent first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """People with memory, most recently active first."""
    with inspected(ctx) as (store, _config):
        rows = store.read_sync(admin.list_resources(limit))
    if as_json:
        print_json([_summary(row) for row in rows])
        return
    if not rows:
        out.print("no memory stored yet")
        return
    table = Table("resource", "documents", "notes", "messages", "last active (UTC)")
    for row in rows:
        table.add_row(
            escape(row.resource_id),
            str(row.documents),
            str(row.notes),
            str(row.messages),
            when(row.last_at),
        )
    out.print(table)


def _summary(row: admin.ResourceSummary) -> dict[str, object]:
    return {
        "resource_id": row.resource_id,
        "documents": row.documents,
        "notes": row.notes,
        "messages": row.messages,
        "last_at": row.last_at,
    }


@memory_app.command("show")
def show_command(ctx: typer.Context, resource: ResourceOption, as_json: JsonOption = False) -> None:
    """Everything stored about one person: working memory, notes, conversation threads."""
    with inspected(ctx) as (store, _config):
        memory = store.read_sync(admin.show_resource(resource))
    if as_json:
        print_json(memory.to_json())
        return
    out.print(f"[bold]memory of {escape(memory.resource_id)}[/]")
    if memory.working is None:
        out.print("working memory: (none)")
    else:
        out.print(
            f"working memory (version {memory.working.version}, updated"
            f" {when(memory.working.updated_at)}):"
        )
        out.print(json.dumps(memory.working.document, indent=2, ensure_ascii=False), markup=False)
    for thread, doc in memory.thread_working.items():
        out.print(f"working memory of thread {escape(thread)} (version {doc.version}):")
        out.print(json.dumps(doc.document, indent=2, ensure_ascii=False), markup=False)
    notes = Table("at (UTC)", "thread", "note", title="notes")
    for note in memory.notes:
        notes.add_row(when(note.created_at), escape(note.thread_id), escape(note.text[:100]))
    out.print(notes)
    threads = Table("thread", "messages", "last message (UTC)", title="conversation history")
    for t in memory.threads:
        threads.add_row(escape(t.thread_id), str(t.messages), when(t.last_at))
    out.print(threads)


@memory_app.command("forget")
def forget_command(
    ctx: typer.Context,
    resource: ResourceOption,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (no undo).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete everything stored about one person (e.g. on a deletion request)."""
    if not yes:
        raise fail(f"this deletes all memory of {resource!r} for good; add --yes to confirm")
    with opened(ctx) as (store, _config):
        counts = store.run_sync(admin.forget_resource(resource))
    if as_json:
        print_json({"resource_id": resource, "deleted": counts})
        return
    out.print(
        f"forgot {escape(resource)}: {counts['documents']} document(s), {counts['notes']} note(s),"
        f" {counts['messages']} message(s)"
    )
