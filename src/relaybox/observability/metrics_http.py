"""``/metrics`` served on the worker's own event loop (h11 over asyncio streams), no thread.

prometheus-client's server answers each scrape on a new thread: the request parsing and the
rendering are Python code holding the GIL while the worker's event loop waits for it, which
showed as a longer tail of the ack cycle under a scraper polling every 100 ms
(benchmarks/metrics_scrape.py, docs/observability.md). Here a scrape is a short callback on
the loop itself, like any other I/O, and the exposition is rendered at most once per
``cache_seconds`` per format (Accept, gzip): scrapes in between get the same bytes.

The socket is bound when :class:`MetricsEndpoint` is made (a busy port is a one-line
:class:`~relaybox.errors.ConfigError` at start); :meth:`MetricsEndpoint.serve` answers on
whatever loop runs it. Bad requests get a 400 and the connection is closed; an idle or stalled
client is dropped after ``CLIENT_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from http import HTTPStatus
from typing import Any

import h11
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from relaybox.errors import ConfigError

CLIENT_TIMEOUT_SECONDS = 10.0
_READ_SIZE = 16_384
_MAX_FORMATS = 8  # (Accept, gzip) variants cached; real scrapers use one or two


class MetricsEndpoint:
    def __init__(
        self, registry: CollectorRegistry, port: int, host: str, cache_seconds: float = 0.0
    ) -> None:
        self.registry = registry
        self.cache_seconds = cache_seconds
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError as error:
            sock.close()
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {error.strerror or error}"
            ) from None
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self.port = int(sock.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._cache: dict[tuple[str, bool], tuple[float, list[tuple[str, str]], bytes]] = {}
        self.renders = 0
        self.scrapes = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def serve(self) -> None:
        """Answer scrapes until cancelled (a continuous worker service)."""
        if self._sock is None:
            raise RuntimeError("the metrics endpoint was closed")
        self._server = await asyncio.start_server(self._client, sock=self._sock)
        try:
            await self._server.serve_forever()
        finally:
            self._server.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- one connection ----------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = await self._next_event(conn, reader)
                if event is None:
                    return
                status, headers, body = self._answer(event)
                headers = [*headers, ("Content-Length", str(len(body)))]
                if event.method == b"HEAD":
                    body = b""
                writer.write(
                    conn.send(
                        h11.Response(status_code=status, headers=headers, reason=_reason(status))
                    )
                )
                if body:
                    writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()  # keep-alive: Prometheus reuses its connection
        except h11.ProtocolError:
            self._refuse(writer, conn)
        except (TimeoutError, ConnectionError):
            return  # a client that went quiet or away: nothing to answer
        finally:
            writer.close()

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        """The next request (its body, if any, is read and dropped); None at a clean end."""
        request = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), CLIENT_TIMEOUT_SECONDS)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                if event.method not in (b"GET", b"HEAD"):
                    return event  # answered at once (405), its body unread; then closed
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    def _answer(self, request: h11.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.method not in (b"GET", b"HEAD"):
            text = f"# HTTP 405: {request.method.decode('ascii', 'replace')}; use GET\n"
            return 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], text.encode()
        path = request.target.split(b"?", 1)[0]
        if path == b"/favicon.ico":
            return 204, [], b""
        accept = ""
        accept_encoding = ""
        for name, value in request.headers:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"accept-encoding":
                accept_encoding = value.decode("latin-1")
        headers, body = self._exposition(accept, gzip_accepted(accept_encoding))
        self.scrapes += 1
        return 200, headers, body

    def _exposition(self, accept: str, zipped: bool) -> tuple[list[tuple[str, str]], bytes]:
        key = (accept, zipped)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and self.cache_seconds > 0 and now - hit[0] < self.cache_seconds:
            return hit[1], hit[2]
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        headers = [("Content-Type", content_type)]
        if zipped:
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        self.renders += 1
        if len(self._cache) >= _MAX_FORMATS:
            self._cache.clear()
        self._cache[key] = (now, headers, body)
        return headers, body

    @staticmethod
    def _refuse(writer: asyncio.StreamWriter, conn: h11.Connection) -> None:
        """A request h11 could not parse: 400 if we may still answer, then close."""
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                body = b"# HTTP 400: bad request\n"
                response = h11.Response(
                    status_code=400,
                    reason=_reason(400),
                    headers=[("Content-Type", "text/plain"), ("Connection", "close")],
                )
                writer.write(conn.send(response) + conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
            except h11.ProtocolError:
                return  # the state moved on meanwhile: just close


def _reason(status: int) -> bytes:
    """``OK``, ``Method Not Allowed``...: h11 sends an empty reason phrase unless given one."""
    return HTTPStatus(status).phrase.encode("ascii")
