"""Slack Events API endpoint: signing secret, 5-minute replay window, ``event_id`` dedup.

Slack signs ``v0:<X-Slack-Request-Timestamp>:<body>`` with HMAC-SHA256 under the app's signing
secret (``X-Slack-Signature: v0=<hex>``). Requests older than five minutes are refused, so a
captured request cannot be replayed later; a retry within the window (``X-Slack-Retry-Num``)
carries the same ``event_id`` and is recorded as a duplicate. Slack wants an answer within
3 seconds. ``url_verification`` is answered with its challenge; messages from bots (including
ours) and edits are acknowledged without recording, or the bot would answer itself.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from relaybox.asgi import Request
from relaybox.inbound.platforms.base import (
    Answer,
    BadPayload,
    BadSignature,
    InboundEvent,
    check_age,
    json_body,
    same,
)


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack would send."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SlackEndpoint:
    signing_secret: str
    deadline_seconds: float = 3.0

    def verify(self, request: Request, now: float) -> None:
        timestamp = request.headers.get("x-slack-request-timestamp")
        check_age(timestamp, now, "X-Slack-Request-Timestamp")
        expected = slack_signature(self.signing_secret, timestamp or "", request.body)
        if not same(expected, request.headers.get("x-slack-signature")):
            raise BadSignature("X-Slack-Signature does not match")

    def parse(self, request: Request) -> InboundEvent | Answer:
        data = json_body(request)
        if data.get("type") == "url_verification":
            return Answer(200, {"challenge": data.get("challenge", "")})
        if data.get("type") != "event_callback":
            return Answer(200)
        event = data.get("event")
        event_id = data.get("event_id")
        if not isinstance(event, dict) or not isinstance(event_id, str):
            raise BadPayload("event_callback without event or event_id")
        if event.get("type") != "message" or event.get("bot_id") or event.get("subtype"):
            return Answer(200)  # not a user's new message: nothing to answer
        channel, user = event.get("channel"), event.get("user")
        if not isinstance(channel, str) or not isinstance(user, str):
            raise BadPayload("message event without channel or user")
        text = event.get("text")
        return InboundEvent(
            external_id=event_id,
            thread_id=f"chat-{channel}",
            resource_id=channel,
            text=text if isinstance(text, str) else None,
            meta={"sender": user, "ts": event.get("ts"), "team": data.get("team_id")},
        )

    def ack(self, event: InboundEvent) -> Answer:
        return Answer(200)
