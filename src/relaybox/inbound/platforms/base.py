"""What a platform's inbound endpoint provides to the inbound app.

An endpoint checks that a request really comes from the platform (:meth:`InboundEndpoint.verify`
raises :class:`BadSignature`: the app answers 401 and stores nothing), turns it into an
:class:`InboundEvent` or an immediate :class:`Answer` (a URL check, a ping, an event we do not
handle), and says what to answer once the event is recorded.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, Protocol

from relaybox.asgi import Request

REPLAY_WINDOW_SECONDS = 300.0  # Slack's documented window; used for Discord's timestamp too


class BadSignature(Exception):
    """The request is not signed by the platform (or is too old): 401, nothing stored."""


class BadPayload(Exception):
    """Signed, but not something the endpoint understands: 400, nothing stored."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body (bytes, text, or a JSON value) and content type."""

    status: int = 200
    body: Any = b""
    content_type: str | None = None


@dataclass(frozen=True)
class InboundEvent:
    """A message from a user, as relaybox records it (see ``Relaybox.turn``).

    ``resource_id`` is the address a reply goes to (the chat, channel or phone number), so
    ``turn.reply(...)`` answers where the message came from; the sender's own id is in
    ``meta["sender"]``.
    """

    external_id: str  # the platform's id for this delivery: dedup key
    thread_id: str
    resource_id: str
    text: str | None
    meta: dict[str, Any] = field(default_factory=dict)


class InboundEndpoint(Protocol):
    """One channel's inbound webhook."""

    @property
    def deadline_seconds(self) -> float:
        """How soon the platform wants an answer (it retries or gives up after)."""

    def verify(self, request: Request, now: float) -> None:
        """Raise :class:`BadSignature` unless the platform signed ``request`` (and recently)."""

    def parse(self, request: Request) -> InboundEvent | Answer:
        """The event in ``request``, or what to answer at once; :class:`BadPayload` if bad."""

    def ack(self, event: InboundEvent) -> Answer:
        """The answer once ``event`` is recorded (or recognised as a duplicate)."""


def same(expected: str, given: str | None) -> bool:
    """Constant-time string comparison (no timing oracle on secrets)."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def check_age(timestamp: str | None, now: float, what: str) -> None:
    try:
        sent = float(timestamp or "")
    except ValueError:
        raise BadSignature(f"missing or malformed {what}") from None
    if abs(now - sent) > REPLAY_WINDOW_SECONDS:
        raise BadSignature(f"{what} is more than 5 minutes away from now (a replay?)")


def json_body(request: Request) -> dict[str, Any]:
    data = request.json()
    if not isinstance(data, dict):
        raise BadPayload("the body is not a JSON object")
    return data
