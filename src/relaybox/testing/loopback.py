"""A loopback webhook receiver: "the user's phone" for tests, demos and benchmarks.

:class:`LoopbackReceiver` is a real HTTP server on 127.0.0.1 (port 0) that speaks the webhook
contract (see :mod:`relaybox.transports.webhook`): it records every request on the wire and
what the user actually saw, deduplicates by ``Idempotency-Key`` with a
:class:`relaybox.dedup.Deduplicator`, and can be told to fail, rate-limit or hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, urlsplit

from relaybox.dedup import Deduplicator, new_message_id

__all__ = [
    "Behaviour",
    "LoopbackReceiver",
    "Response",
    "StatusBehaviour",
    "json_response",
]

# --- loopback receiver -------------------------------------------------------------------------

Response: TypeAlias = tuple[int, dict[str, str], bytes]
"""An HTTP answer: status, headers, body."""

Behaviour: TypeAlias = Callable[
    [dict[str, Any]], Response | Literal["hang", "surface_and_hang"] | None
]
"""Consulted for each POST (after it is recorded on the wire) with its JSON body.

Return ``None`` to handle the request normally, a :data:`Response` to answer with that instead
(nothing is surfaced), ``"hang"`` to answer nothing until the client gives up (nothing is
surfaced), or ``"surface_and_hang"`` to surface the part and then answer nothing (the classic
ambiguous send: the user has it, the sender cannot know).
"""

StatusBehaviour: TypeAlias = Callable[[str], Response | Literal["hang"] | None]
"""Consulted for each ``GET /status`` with the GUID asked about.

Return ``None`` to answer normally, a :data:`Response` to answer that, ``"hang"`` to answer nothing.
"""

_MAX_BODY_BYTES = 16 * 1024 * 1024


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    """A :data:`Response` with a JSON body, for use in behaviours."""
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(data).encode(),
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: many concurrent senders
    block_on_close = False  # LoopbackReceiver.stop() waits for handlers itself, boundedly
    receiver: LoopbackReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that connects and sends nothing does not pin a thread forever

    def do_POST(self) -> None:
        self.server.receiver._handle(self, "POST")

    def do_GET(self) -> None:
        self.server.receiver._handle(self, "GET")

    def log_message(self, format: str, *args: Any) -> None:
        return None


class LoopbackReceiver:
    """A webhook receiver on 127.0.0.1 that records what "the user's phone" showed.

    ``with LoopbackReceiver() as rx:`` serves ``POST rx.url`` (``/send``) and ``GET
    rx.status_url`` (``/status?guid=...``) from a background thread until the block ends.

    Recorded, in arrival order:

    - ``wire``: the JSON body of every POST received, duplicates and failures included
      (``wire_headers`` holds its headers, lower-cased);
    - ``seen``: what the user saw, the first copy of each GUID (every copy if ``dedup`` is off);
    - ``duplicates_on_wire``: POSTs whose Idempotency-Key had been seen before.

    A first copy gets ``200 {"message_id": ...}``; a duplicate gets ``409 {"message_id": ...}``
    with the first copy's id, or, with ``dedup = False`` (a receiver that ignores
    Idempotency-Key), is surfaced again with ``200``. ``behaviour``, ``status_behaviour``,
    :meth:`fail_next` and :meth:`hold_after` simulate failures; hanging requests end at
    :meth:`stop` or after ``hang_seconds``, whichever comes first.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        dedup: bool = True,
        deduplicator: Deduplicator | None = None,
        behaviour: Behaviour | None = None,
        status_behaviour: StatusBehaviour | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        self.dedup = dedup
        self.deduplicator = deduplicator if deduplicator is not None else Deduplicator()
        self._owns_deduplicator = deduplicator is None
        self.behaviour = behaviour
        self.status_behaviour = status_behaviour
        self.hang_seconds = hang_seconds
        self.wire: list[dict[str, Any]] = []
        self.wire_headers: list[dict[str, str]] = []
        self.seen: list[dict[str, Any]] = []
        self.duplicates_on_wire = 0
        self.status_requests: list[str] = []
        self.errors: list[BaseException] = []  # exceptions raised by behaviours
        self._cond = threading.Condition()
        self._stopping = False
        self._active = 0
        self._fail_next: list[Response] = []
        self._hold_after: int | None = None
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = int(self._server.server_address[1])

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/send"

    @property
    def status_url(self) -> str:
        return f"http://{self.host}:{self.port}/status"

    def start(self) -> LoopbackReceiver:
        if self._thread is not None:
            raise RuntimeError("LoopbackReceiver already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"loopback-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, *, grace_seconds: float = 5.0) -> None:
        """Stop serving; end hanging and held requests; wait (boundedly) for handlers."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        with self._cond:
            self._cond.wait_for(lambda: self._active == 0, timeout=grace_seconds)
        if self._owns_deduplicator:
            self.deduplicator.close()

    def __enter__(self) -> LoopbackReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test helpers ------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        headers: dict[str, str] | None = None,
        body: bytes = b"simulated failure",
    ) -> None:
        """Answer the next ``count`` POSTs with ``status`` (nothing is surfaced)."""
        with self._cond:
            self._fail_next.extend([(status, dict(headers or {}), body)] * count)

    def hold_after(self, count: int | None) -> None:
        """Once ``count`` parts have been seen, hold further POSTs unanswered until
        :meth:`release` (then they are handled normally, even if the client has given up) or
        :meth:`stop` / ``hang_seconds`` (then they end unanswered and unsurfaced)."""
        with self._cond:
            self._hold_after = count
            self._cond.notify_all()

    def release(self) -> None:
        """Let held POSTs through (see :meth:`hold_after`)."""
        self.hold_after(None)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` (checked on every request) is true; False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout)

    def wait_until_seen(self, count: int, timeout: float = 5.0) -> bool:
        """Block until the user has seen at least ``count`` parts; False on timeout."""
        return self.wait_for(lambda: len(self.seen) >= count, timeout)

    async def wait_for_async(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """:meth:`wait_for` for async code: does not block the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if predicate():
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)

    async def wait_until_seen_async(self, count: int, timeout: float = 5.0) -> bool:
        return await self.wait_for_async(lambda: len(self.seen) >= count, timeout)

    def texts(self, thread_id: str | None = None) -> list[str]:
        """The texts the user saw, optionally in one thread, in order."""
        with self._cond:
            return [
                str(body.get("text"))
                for body in self.seen
                if thread_id is None or body.get("thread_id") == thread_id
            ]

    # --- request handling (handler threads) --------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        with self._cond:
            self._active += 1
        try:
            path = urlsplit(handler.path)
            if method == "POST" and path.path == "/send":
                self._handle_send(handler)
            elif method == "GET" and path.path == "/status":
                self._handle_status(handler, path.query)
            else:
                self._respond(handler, json_response(404, {"error": "no such endpoint"}))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            handler.close_connection = True  # the client went away
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _handle_send(self, handler: _Handler) -> None:
        try:
            length = int(handler.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY_BYTES:
            self._respond(handler, json_response(400, {"error": "bad Content-Length"}))
            return
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            self._respond(handler, json_response(400, {"error": "body must be a JSON object"}))
            return
        headers = {key.lower(): value for key, value in handler.headers.items()}
        key = headers.get("idempotency-key") or body.get("guid")
        with self._cond:
            self.wire.append(body)
            self.wire_headers.append(headers)
            self._cond.notify_all()
            valid = isinstance(key, str) and bool(key)
            canned = self._fail_next.pop(0) if valid and self._fail_next else None
        if not isinstance(key, str) or not key:
            self._respond(handler, json_response(400, {"error": "no Idempotency-Key"}))
            return
        if canned is not None:
            self._respond(handler, canned)
            return

        action: Response | str | None = None
        if self.behaviour is not None:
            try:
                action = self.behaviour(body)
            except Exception as error:  # noqa: BLE001 - a broken test hook: answer 500, not hang
                with self._cond:
                    self.errors.append(error)
                self._respond(handler, json_response(500, {"error": f"behaviour raised {error!r}"}))
                return
        if action == "hang":
            self._hang(handler)
            return
        if isinstance(action, tuple):
            self._respond(handler, action)
            return
        if action not in (None, "surface_and_hang"):
            self._respond(handler, json_response(500, {"error": f"bad behaviour {action!r}"}))
            return
        if action is None and not self._wait_if_held():
            handler.close_connection = True  # stopped or timed out while held: no answer
            return

        status, message_id = self._surface(key, body)
        if action == "surface_and_hang":
            self._hang(handler)
            return
        self._respond(handler, json_response(status, {"message_id": message_id}))

    def _surface(self, key: str, body: dict[str, Any]) -> tuple[int, str]:
        """Show ``body`` to the user unless it is a duplicate; return (status, message_id)."""
        with self._cond:
            first_time, message_id = self.deduplicator.claim(key)
            if not first_time:
                self.duplicates_on_wire += 1
                if self.dedup:
                    self._cond.notify_all()
                    return 409, message_id
                message_id = new_message_id()  # a non-deduplicating receiver shows it again
            self.seen.append(body)
            self._cond.notify_all()
            return 200, message_id

    def _wait_if_held(self) -> bool:
        """Wait while :meth:`hold_after` holds; False if stopped or ``hang_seconds`` passed."""
        with self._cond:

            def held() -> bool:
                return self._hold_after is not None and len(self.seen) >= self._hold_after

            if not held():
                return True
            self._cond.wait_for(lambda: self._stopping or not held(), timeout=self.hang_seconds)
            return not self._stopping and not held()

    def _hang(self, handler: _Handler) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=self.hang_seconds)
        handler.close_connection = True  # end without an answer

    def _handle_status(self, handler: _Handler, query: str) -> None:
        guids = parse_qs(query).get("guid")
        if not guids or not guids[0]:
            self._respond(handler, json_response(400, {"error": "guid query parameter needed"}))
            return
        guid = guids[0]
        with self._cond:
            self.status_requests.append(guid)
            self._cond.notify_all()
        if self.status_behaviour is not None:
            canned = self.status_behaviour(guid)
            if canned == "hang":
                self._hang(handler)
                return
            if isinstance(canned, tuple):
                self._respond(handler, canned)
                return
        with self._cond:
            message_id = self.deduplicator.get(guid)
        if message_id is None:
            self._respond(handler, json_response(404, {"surfaced": False}))
        else:
            self._respond(handler, json_response(200, {"surfaced": True, "message_id": message_id}))

    @staticmethod
    def _respond(handler: _Handler, response: Response) -> None:
        status, headers, body = response
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if not any(name.lower() == "content-length" for name in headers):
            handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
        handler.close_connection = True
