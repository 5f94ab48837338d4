"""Twilio SMS webhook endpoint: ``X-Twilio-Signature``, ``MessageSid`` dedup, TwiML answer.

Twilio signs the full URL it called followed by every POST parameter (sorted by name, name
and value concatenated) with HMAC-SHA1 under the account's auth token, base64-encoded. Behind
a proxy the URL the app sees differs from the public one, so set the channel's
``webhook_url`` to the URL configured in Twilio. Twilio resends on failure with the same
``MessageSid``. The answer is an empty TwiML ``<Response/>`` (the reply goes out through the
outbox, not in the webhook answer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from relaybox.asgi import Request
from relaybox.inbound.platforms.base import Answer, BadPayload, BadSignature, InboundEvent, same

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` value Twilio would send for a form POST to ``url``."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _request_url(request: Request) -> str:
    proto = request.headers.get("x-forwarded-proto", "http")
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    query = f"?{request.query}" if request.query else ""
    return f"{proto}://{host}{request.path}{query}"


@dataclass(frozen=True)
class TwilioEndpoint:
    auth_token: str
    webhook_url: str | None = None  # the public URL configured in Twilio
    deadline_seconds: float = 15.0

    def verify(self, request: Request, now: float) -> None:
        url = self.webhook_url or _request_url(request)
        expected = twilio_signature(self.auth_token, url, request.form_pairs())
        if not same(expected, request.headers.get("x-twilio-signature")):
            raise BadSignature("X-Twilio-Signature does not match")

    def parse(self, request: Request) -> InboundEvent | Answer:
        form = request.form()
        sid, sender = form.get("MessageSid") or form.get("SmsSid"), form.get("From")
        if not sid or not sender:
            raise BadPayload("form without MessageSid or From")
        return InboundEvent(
            external_id=sid,
            thread_id=f"chat-{sender}",
            resource_id=sender,
            text=form.get("Body"),
            meta={"sender": sender, "to": form.get("To"), "segments": form.get("NumSegments")},
        )

    def ack(self, event: InboundEvent) -> Answer:
        return Answer(200, EMPTY_TWIML, "text/xml; charset=utf-8")
