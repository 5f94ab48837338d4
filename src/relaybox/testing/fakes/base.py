"""What every platform fake shares: the user's screen, the wire, scripted answers, a clock.

A fake is an ASGI app that speaks one platform's HTTP API shape closely enough for the
platform's SDK (or our httpx client) to talk to it. It records each request on the wire and
each message the user would see, with the time it arrived by the fake's own clock
(``time.monotonic`` of the test process), so a test measures pacing from what the platform saw.

Scripted answers (:meth:`FakePlatform.next_answer`) make the next send(s) fail the way the
platform fails: rate limited with the platform's wait, a server error, a bad token, an unknown
chat, "accepted but the answer was lost" (the message is shown, no answer ever comes), or a
hang (nothing shown, no answer).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relaybox.asgi import (
    BodyTooLarge,
    Receive,
    Request,
    Scope,
    Send,
    read_request,
    send_response,
)
from relaybox.testing.contract import Scenario
from relaybox.testing.fakes._asgi import ServedApp

__all__ = ["FakePlatform", "Scripted", "Shown"]


@dataclass(frozen=True)
class Shown:
    """One message on the user's screen."""

    chat: str
    text: str
    message_id: str
    at: float  # the fake's clock (time.monotonic) when it arrived
    extra: dict[str, Any] = field(default_factory=dict)  # nonce, metadata, sender, ...


@dataclass(frozen=True)
class Scripted:
    scenario: Scenario
    retry_after: float


class FakePlatform:
    """Base of the platform fakes: state, scripts and serving; subclasses route requests."""

    #: a platform's name, for messages
    platform = "fake"

    def __init__(self, *, hang_seconds: float = 30.0) -> None:
        self.hang_seconds = hang_seconds
        self.screen: list[Shown] = []
        self.wire: list[Request] = []  # every request to the send endpoint, in arrival order
        self.requests: list[Request] = []  # every request, any endpoint
        self._script: list[Scripted] = []
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._closing = False
        self._served: ServedApp | None = None

    # -- control from the test ---------------------------------------------------------

    def next_answer(self, scenario: Scenario, *, retry_after: float = 2.0, count: int = 1) -> None:
        """Answer the next ``count`` sends with ``scenario`` (in order after earlier scripts)."""
        with self._cond:
            self._script.extend(Scripted(scenario, retry_after) for _ in range(count))

    def texts(self, chat: str | None = None) -> list[str]:
        """What the user saw, optionally in one chat."""
        with self._cond:
            return [m.text for m in self.screen if chat is None or m.chat == chat]

    def shown(self, chat: str | None = None) -> list[Shown]:
        with self._cond:
            return [m for m in self.screen if chat is None or m.chat == chat]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate()`` (checked whenever the fake records something)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_until_shown(self, count: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda: len(self.screen) >= count, timeout)

    # -- serving -----------------------------------------------------------------------

    def serve(self) -> FakePlatform:
        """Start serving on a loopback port (see :attr:`url`); :meth:`close` stops it."""
        self._served = ServedApp(self).start()
        return self

    @property
    def url(self) -> str:
        if self._served is None:
            raise RuntimeError("the fake is not served; call serve() first")
        return self._served.url

    def close(self) -> None:
        self._closing = True
        if self._served is not None:
            self._served.stop()
            self._served = None

    def __enter__(self) -> FakePlatform:
        return self.serve()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- for subclasses ----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            request = await read_request(scope, receive)
        except BodyTooLarge:
            await send_response(send, 413, {"error": "too large"})
            return
        with self._cond:
            self.requests.append(request)
        await self.route(request, send)

    async def route(self, request: Request, send: Send) -> None:
        """Answer one request (subclasses)."""
        raise NotImplementedError

    def take_script(self, request: Request) -> Scripted | None:
        """Record ``request`` as a send on the wire; the scripted answer for it, if any."""
        with self._cond:
            self.wire.append(request)
            self._cond.notify_all()
            return self._script.pop(0) if self._script else None

    def new_id(self) -> int:
        return next(self._ids)

    def show(self, shown: Shown) -> Shown:
        with self._cond:
            self.screen.append(shown)
            self._cond.notify_all()
        return shown

    def find(self, predicate: Callable[[Shown], bool]) -> Shown | None:
        with self._cond:
            return next((m for m in self.screen if predicate(m)), None)

    async def hang(self) -> None:
        """Answer nothing until the client gives up (or the fake closes)."""
        deadline = time.monotonic() + self.hang_seconds
        while not self._closing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
