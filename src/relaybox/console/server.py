"""Running the console under uvicorn, with a shutdown that ends the open event streams first.

uvicorn waits for every open response before it stops, and an event stream never ends by
itself; closing the change feed first makes each stream return, so Ctrl-C (or SIGTERM) stops
the console at once instead of after the graceful-shutdown timeout.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from relaybox.console.app import ConsoleState


class ConsoleServer(uvicorn.Server):
    def __init__(self, app: FastAPI, *, graceful_seconds: int = 2) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=graceful_seconds,
            )
        )
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = self._app.state.console
        assert isinstance(state, ConsoleState)
        await state.feed.close()
        await super().shutdown(sockets)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one).

    ``IPPROTO_TCP``, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    listening socket says TCP; without it every response waits ~40 ms for a delayed ACK.
    """
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
