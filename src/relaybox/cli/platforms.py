"""``relaybox transports`` (what a channel may use) and ``relaybox webhooks`` (serve the inbound
webhooks of the chat platforms on their own). See docs/platforms.md."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Annotated, Any

import typer

from relaybox.cli.app import fail, globals_of, opened, out, print_json


def register(app: typer.Typer) -> None:
    app.command("transports")(transports_command)
    app.command("webhooks")(webhooks_command)


def transports_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Transports a channel may use (built in and plugins), with their platform limits."""
    from relaybox.errors import ConfigError
    from relaybox.transports.options import option_names
    from relaybox.transports.registry import get_kind, known_kinds

    rows: list[dict[str, Any]] = []
    for name in known_kinds():
        try:
            kind = get_kind(name)
        except ConfigError as error:  # a plugin that does not load: shown, not fatal
            rows.append({"name": name, "error": str(error)})
            continue
        rows.append(
            {
                "name": name,
                "summary": kind.summary,
                "options": sorted(option_names(kind.options)),
                "preset": dict(kind.preset),
                "inbound": kind.inbound is not None,
            }
        )
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("transport", "what", "preset limits", "inbound", "options")
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], f"[red]{row['error']}[/]", "", "", "")
            continue
        preset = "\n".join(f"{k} = {v:g}" for k, v in row["preset"].items())
        table.add_row(
            row["name"],
            row["summary"],
            preset,
            "yes" if row["inbound"] else "",
            "\n".join(row["options"]),
        )
    out.print(table)


def webhooks_command(
    ctx: typer.Context,
    handler: Annotated[
        str,
        typer.Option(
            "--handler",
            help="Your turn handler, an async function 'package.module:function' taking the turn.",
        ),
    ],
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", help="Serve only this channel (repeat); default: all."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8026,
) -> None:
    """Serve the chat platforms' inbound webhooks: POST /<channel>, signed, recorded once."""
    from relaybox.client import Relaybox
    from relaybox.inbound.webhooks import inbound_app
    from relaybox.turns.resume import load_handler

    try:
        import uvicorn
    except ImportError:
        raise fail("serving webhooks needs uvicorn: pip install 'relaybox[console]'") from None
    globals_of(ctx)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    with opened(ctx) as (store, config):
        turn_handler = load_handler(handler)
        app = inbound_app(Relaybox(store, config), turn_handler, channels=channel)
        if not app.channels:
            raise fail("no configured channel has an inbound webhook (see docs/platforms.md)")
        server_class = _graceful_server_class()
        try:
            listener = _listen(host, port)
        except OSError as error:
            raise fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        try:
            paths = ", ".join(f"/{name}" for name in app.channels)
            actual = listener.getsockname()[1]
            out.print(f"webhooks on http://{host}:{actual} ({paths}); Ctrl-C stops", markup=False)
            config_ = uvicorn.Config(app, log_level="warning", lifespan="on")
            asyncio.run(server_class(config_).serve(sockets=[listener]))
        finally:
            listener.close()


def _graceful_server_class() -> Any:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """SIGTERM / Ctrl-C: drain the handlers (lifespan), then exit 0.

        uvicorn re-raises the signal after a graceful shutdown (exit status -15); a stop that
        finished its work is not a failure, so that is skipped.
        """

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return GracefulServer


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
