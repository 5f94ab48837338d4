"""The inbound ASGI app: one webhook endpoint per channel, on every platform that has one.

``POST <mount>/<channel>`` runs, in order:

1. **Signature** (the channel's transport kind provides the endpoint: Slack signing secret
   with a 5-minute window, Twilio request signature, Telegram secret token header, Discord
   Ed25519). Bad or missing: ``401``, nothing stored.
2. **Parse**: a platform check (Slack ``url_verification``, Discord PING) or an event we do
   not handle (bot messages, edits) is answered at once; a malformed body is ``400``.
3. **Record and hand off**: the message opens a turn (``rb.turn``: recorded once by
   ``(channel, platform id)``: Telegram ``update_id``, Slack ``event_id``, Twilio
   ``MessageSid``, Discord interaction id). Once the record is committed the platform gets its
   answer; the user's handler (``async def handler(turn)``, the same function the resume
   service calls) runs after, in the background, so a slow agent never misses the platform's
   deadline (Slack and Discord: 3 s). A replay finds the turn already recorded: a duplicate,
   answered the same way, and the handler is not called again. If the store cannot record in
   time, the answer is ``503`` and the platform's own retry comes back as a duplicate or a
   first delivery, never as a loss.

Use it on its own with any ASGI server, or mount it in another app (``relaybox serve``)::

    app = inbound_app(rb, handle_turn)              # uvicorn myapp:app
    console.mount("/inbound", app)                  # Starlette / FastAPI

Call :meth:`InboundApp.drain` at shutdown to let running handlers finish (an ASGI server
running the app directly does that through the lifespan protocol). A handler that dies with
the process is resumed by the worker's resume service (docs/turns.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from relaybox.asgi import (
    BodyTooLarge,
    Receive,
    Request,
    Scope,
    Send,
    read_request,
    send_response,
)
from relaybox.errors import ConfigError, InvalidInbound, StoreUnavailable
from relaybox.inbound.platforms.base import (
    Answer,
    BadPayload,
    BadSignature,
    InboundEndpoint,
    InboundEvent,
)

if TYPE_CHECKING:
    from relaybox.client import Relaybox
    from relaybox.turns.api import Turn

__all__ = ["InboundApp", "inbound_app"]

log = logging.getLogger("relaybox.inbound")

TurnHandler = Callable[["Turn"], Awaitable[None]]


def inbound_app(
    rb: Relaybox,
    handler: TurnHandler,
    *,
    channels: Sequence[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> InboundApp:
    """An ASGI app serving ``POST /<channel>`` for ``channels`` (default: every configured
    channel whose transport has an inbound endpoint). Secrets are read now: a missing one is
    a :class:`ConfigError` naming its environment variable."""
    from relaybox.transports.registry import get_kind

    endpoints: dict[str, InboundEndpoint] = {}
    names = list(rb.config.channels) if channels is None else list(channels)
    for name in names:
        channel = rb.config.channel(name)
        build = get_kind(channel.transport).inbound
        if build is None:
            if channels is not None:
                raise ConfigError(f"channel {name!r} ({channel.transport}) has no inbound webhook")
            continue
        endpoints[name] = build(channel)
    return InboundApp(rb, handler, endpoints, clock=clock)


class InboundApp:
    """See the module docstring. ``endpoints`` maps a channel name to its platform endpoint."""

    def __init__(
        self,
        rb: Relaybox,
        handler: TurnHandler,
        endpoints: dict[str, InboundEndpoint],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rb = rb
        self.handler = handler
        self.endpoints = endpoints
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def channels(self) -> list[str]:
        return sorted(self.endpoints)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait (up to ``timeout``) for handlers still running."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        channel = str(scope.get("path", "")).rstrip("/").rsplit("/", 1)[-1]
        endpoint = self.endpoints.get(channel)
        if endpoint is None:
            await send_response(send, 404, {"error": f"no inbound webhook for {channel!r}"})
            return
        if scope.get("method") != "POST":
            await send_response(send, 405, {"error": "POST only"}, {"Allow": "POST"})
            return
        try:
            request = await read_request(scope, receive)
        except BodyTooLarge as error:
            await send_response(send, 413, {"error": str(error)})
            return
        answer = await self._handle(channel, endpoint, request)
        await send_response(send, answer.status, answer.body, content_type=answer.content_type)

    async def _handle(self, channel: str, endpoint: InboundEndpoint, request: Request) -> Answer:
        try:
            endpoint.verify(request, self.clock())
        except BadSignature as error:
            log.warning("inbound %s: refused: %s", channel, error)
            return Answer(401, {"error": f"bad signature: {error}"})
        try:
            parsed = endpoint.parse(request)
        except BadPayload as error:
            return Answer(400, {"error": str(error)})
        if isinstance(parsed, Answer):
            return parsed
        recorded: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._run(channel, parsed, recorded))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(endpoint.deadline_seconds * 0.8):
                outcome = await asyncio.shield(recorded)
        except TimeoutError:
            recorded.add_done_callback(_consume)
            log.warning("inbound %s: not recorded within the platform's deadline", channel)
            return Answer(503, {"error": "not recorded in time; retry"})
        except InvalidInbound as error:
            return Answer(400, {"error": str(error)})
        except StoreUnavailable as error:
            return Answer(503, {"error": f"store unavailable: {error}"})
        log.debug("inbound %s %s: %s", channel, parsed.external_id, outcome)
        return endpoint.ack(parsed)

    async def _run(self, channel: str, event: InboundEvent, recorded: asyncio.Future[str]) -> None:
        try:
            async with self.rb.turn(
                channel=channel,
                external_id=event.external_id,
                thread_id=event.thread_id,
                resource_id=event.resource_id,
                text=event.text,
                meta=event.meta,
            ) as turn:
                recorded.set_result(str(turn.outcome))
                if turn.should_run:
                    await self.handler(turn)
        except Exception as error:  # noqa: BLE001 - reported to the request, or logged
            if not recorded.done():
                recorded.set_exception(error)
            else:  # the turn's scope recorded the failure; the resume service retries it
                log.warning(
                    "inbound %s %s: handler failed: %s: %s",
                    channel,
                    event.external_id,
                    type(error).__name__,
                    error,
                )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.drain()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _consume(future: asyncio.Future[str]) -> None:
    """Retrieve a late recording error, so asyncio does not warn it was never retrieved."""
    with contextlib.suppress(asyncio.CancelledError):
        error = future.exception()
        if error is not None:
            log.warning("inbound: late recording failed: %s", error)
