"""The Typer application, its global options, and helpers every command shares."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from relaybox.config import Config, default_config, load_config, store_url_of
from relaybox.errors import ConfigError, RelayboxError
from relaybox.store import DEFAULT_URL, Store, open_store

T = TypeVar("T")

app = typer.Typer(
    name="relaybox",
    help="Durable replies for chat agents: enqueue, deliver, inspect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Globals:
    db: str | None
    config_path: Path | None

    def config(self) -> Config:
        return load_config(self.config_path)

    def url(self, config: Config | None = None) -> str:
        cfg = config if config is not None else self.config()
        return self.db or os.environ.get("RELAYBOX_DB") or cfg.store_url or DEFAULT_URL


@app.callback()
def _global_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Store URL: sqlite:///relaybox.db (default), sqlite:////abs/path.db or "
            "postgresql://user@host:port/db. Also $RELAYBOX_DB.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Path to relaybox.toml (default: ./relaybox.toml)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print relaybox's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    ctx.obj = Globals(db=db, config_path=config)


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        number = installed_version("relaybox")
    except PackageNotFoundError:  # running from a source tree that was never installed
        number = "unknown (not installed)"
    sys.stdout.write(f"relaybox {number}\n")
    raise typer.Exit()


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    assert isinstance(obj, Globals)
    return obj


def fail(message: str) -> typer.Exit:
    # The message is text, not markup: "pip install 'relaybox[otel]'" and "[store] url" keep
    # their brackets.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(code=1)


@contextmanager
def inspected(ctx: typer.Context) -> Iterator[tuple[Store, Config]]:
    """Open the store read-only for an inspection command.

    Nothing is created, migrated or written (see ``open_store(read_only=True)``), and a broken
    relaybox.toml only earns a warning: in an incident the operator still gets an answer.
    """
    g = globals_of(ctx)
    try:
        config = g.config()
        url = g.url(config)
    except ConfigError as error:
        err.print(f"warning: {error}; answering with default settings", markup=False)
        config = default_config()
        url = g.db or os.environ.get("RELAYBOX_DB") or store_url_of(g.config_path) or DEFAULT_URL
    try:
        store = open_store(url, read_only=True)
    except RelayboxError as error:
        raise fail(str(error)) from None
    try:
        yield store, config
    except RelayboxError as error:
        raise fail(str(error)) from None
    finally:
        store.close()


@contextmanager
def opened(ctx: typer.Context) -> Iterator[tuple[Store, Config]]:
    """Load the config and open the store; turn relaybox errors into one-line failures."""
    g = globals_of(ctx)
    try:
        config = g.config()
        store = open_store(g.url(config))
    except RelayboxError as error:
        raise fail(str(error)) from None
    try:
        yield store, config
    except RelayboxError as error:
        raise fail(str(error)) from None
    finally:
        store.close()


def guarded(action: Callable[[], T]) -> T:
    try:
        return action()
    except RelayboxError as error:
        raise fail(str(error)) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
