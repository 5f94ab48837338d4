"""``relaybox serve``: the operator console (web pages, JSON API, live updates; spec C9)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

import typer

from relaybox.cli.app import err, fail, globals_of, out
from relaybox.errors import RelayboxError
from relaybox.store import Store, open_store

if TYPE_CHECKING:
    from relaybox.config import Config
    from relaybox.inbound.webhooks import InboundApp, TurnHandler


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
    handler: Annotated[
        str | None,
        typer.Option(
            "--handler",
            help="Also serve the chat platforms' signed webhooks at POST /inbound/<channel>,"
            " handing each new turn to this async function 'package.module:function'"
            " (see docs/platforms.md). No login: platforms prove themselves by signature.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the operator console: live dashboard, deliveries, failures, traces, actions, API."""
    try:
        from relaybox.console.app import create_app
        from relaybox.console.auth import AuthSettings, check_bind
        from relaybox.console.server import ConsoleServer
        from relaybox.turns.resume import load_handler
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
        turn_handler = None if handler is None else load_handler(handler)
        listener = _listen(bind_host, bind_port)
        store = open_store(g.url(config))
    except RelayboxError as error:
        raise fail(str(error)) from None
    try:
        inbound = None if turn_handler is None else _inbound(store, config, turn_handler)
        app = create_app(store, config, settings, inbound=inbound)
        actual = listener.getsockname()[1]
        shown = f"[{bind_host}]" if ":" in bind_host else bind_host
        access = "no login (loopback only)" if settings.open else "login required"
        out.print(f"relaybox console on http://{shown}:{actual}/ ({access}); Ctrl-C stops it")
        if inbound is not None:
            paths = ", ".join(f"/inbound/{name}" for name in inbound.channels)
            out.print(f"platform webhooks (signed, no login): {paths}", markup=False)
        ConsoleServer(app).run(sockets=[listener])
    finally:
        store.close()
        listener.close()


def _inbound(store: Store, config: Config, handler: TurnHandler) -> InboundApp:
    """The platforms' webhook app for every configured channel that has one; one `error:`
    line when a secret is missing or no channel has an inbound webhook."""
    from relaybox.client import Relaybox
    from relaybox.inbound.webhooks import inbound_app

    try:
        app = inbound_app(Relaybox(store, config), handler)
    except RelayboxError as error:
        raise fail(str(error)) from None
    if not app.channels:
        raise fail(
            "--handler: no configured channel has an inbound webhook (see docs/platforms.md)"
        )
    return app


def _listen(host: str, port: int) -> socket.socket:
    from relaybox.console.server import listen

    try:
        return listen(host, port)
    except OSError as error:
        err.print(f"error: cannot listen on {host}:{port}: {error.strerror or error}")
        raise typer.Exit(code=1) from None
