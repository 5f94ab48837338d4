"""``relaybox serve``: the operator console (web pages, JSON API, live updates; spec C9)."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from relaybox.cli.app import err, fail, globals_of, out
from relaybox.errors import RelayboxError
from relaybox.store import open_store


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (default 127.0.0.1, or [console] host). Any other"
            " address needs credentials (see docs/console.md).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port (default 8025, or [console] port; 0 picks a free one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the operator console: live dashboard, deliveries, failures, traces, actions, API."""
    try:
        from relaybox.console.app import create_app
        from relaybox.console.auth import AuthSettings, check_bind
        from relaybox.console.server import ConsoleServer
    except ImportError as error:
        raise fail(
            f"the console needs its extra ({error.name} is missing):"
            " pip install 'relaybox[console]'"
        ) from None
    g = globals_of(ctx)
    try:
        config = g.config()
        bind_host = host or config.console.host
        bind_port = config.console.port if port is None else port
        settings = AuthSettings.from_config(config.console)
        check_bind(bind_host, settings)
        listener = _listen(bind_host, bind_port)
        store = open_store(g.url(config))
    except RelayboxError as error:
        raise fail(str(error)) from None
    try:
        app = create_app(store, config, settings)
        actual = listener.getsockname()[1]
        shown = f"[{bind_host}]" if ":" in bind_host else bind_host
        access = "no login (loopback only)" if settings.open else "login required"
        out.print(f"relaybox console on http://{shown}:{actual}/ ({access}); Ctrl-C stops it")
        ConsoleServer(app).run(sockets=[listener])
    finally:
        store.close()
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    from relaybox.console.server import listen

    try:
        return listen(host, port)
    except OSError as error:
        err.print(f"error: cannot listen on {host}:{port}: {error.strerror or error}")
        raise typer.Exit(code=1) from None
