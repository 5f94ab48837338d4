"""Twilio SMS transport: create a Message over Twilio's REST API with httpx
(``relaybox[twilio]``).

The contract
============

**Why not the SDK.** twilio-python's async client (``AsyncTwilioHttpClient``, on aiohttp) has
no base-URL setting (only region/edge host rewriting), retries through aiohttp-retry when
asked, and drops the response headers of a failed request (so a ``Retry-After`` is lost); it
also pulls in requests, aiohttp and PyJWT for what is one form POST. We make that POST with
httpx: ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with basic auth and
``To``, ``From`` (or ``MessagingServiceSid``), ``Body``. Inbound signature checks need only the
standard library (:mod:`relaybox.inbound.platforms`).

**Answers.**

- 2xx: surfaced (accepted into Twilio's queue; carrier delivery is reported later by status
  callbacks, which relaybox does not track), message id = the ``SM...`` sid.
- 429 (error 20429): rate limited (``Retry-After`` if Twilio sends one, else backoff); no
  attempt burned.
- 5xx: transient. Other 4xx (401 bad credentials, 400 with 21211 invalid ``To``, 21610
  unsubscribed recipient, 21408 region not enabled, ...): permanent, with Twilio's code and
  message kept.
- could not connect: transient. No answer after sending: **ambiguous**. Twilio has no
  idempotency key for messages, and its message list cannot tell a lost send from an earlier
  message with the same text reliably, so relaybox does not guess: the delivery is parked as
  ``unknown`` for an operator (docs/platforms.md says how to check in Twilio's console).

**Preset limits** (overridable): one *segment* per second per sending number (a part is paced
by its segment count: 160 GSM-7 characters, or 70 UCS-2, per single segment; 153 / 67 per
segment of a longer message), 1,600 characters per message. Twilio queues what it cannot send
at once for up to hours; ``max_age_seconds`` keeps stale replies from going out late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from relaybox.models import Outcome
from relaybox.transports import _http
from relaybox.transports.base import (
    NotSent,
    OutgoingPart,
    PermanentError,
    RateLimited,
    ReceiverDown,
    SendResult,
)
from relaybox.transports.options import secret_from_env
from relaybox.transports.registry import TransportKind
from relaybox.transports.webhook import parse_retry_after
from relaybox.validation import is_http_url

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig
    from relaybox.inbound.platforms.base import InboundEndpoint

__all__ = ["TRANSPORT", "TwilioOptions", "TwilioTransport", "segments"]

DEFAULT_BASE_URL = "https://api.twilio.com"

# The GSM 03.38 basic character set (and its extension table, which costs two septets).
_GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(text: str) -> int:
    """How many SMS segments ``text`` takes (GSM-7 if it fits that alphabet, else UCS-2)."""
    if all(c in _GSM or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


@dataclass(frozen=True)
class TwilioOptions:
    """``[channels.x]`` keys of a ``transport = "twilio"`` channel."""

    account_sid: str
    from_number: str | None = None  # the sending line (E.164), or
    messaging_service_sid: str | None = None  # a Messaging Service that picks the line
    auth_token_env: str = "TWILIO_AUTH_TOKEN"
    base_url: str = DEFAULT_BASE_URL
    status_callback: str | None = None  # Twilio posts delivery status here
    webhook_url: str | None = None  # the public inbound URL set in Twilio (signature check)

    def __post_init__(self) -> None:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("from_number or messaging_service_sid must be set (one of them)")
        for key in ("base_url", "status_callback", "webhook_url"):
            value = getattr(self, key)
            if value is not None and not is_http_url(value):
                raise ValueError(f"{key} must be an http:// or https:// URL")


class TwilioTransport:
    """Send parts as SMS through Twilio. Safe to call concurrently."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 15.0,
        status_callback: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._sender = (
            {"From": from_number}
            if from_number is not None
            else {"MessagingServiceSid": messaging_service_sid or ""}
        )
        self._status_callback = status_callback
        self._client = client
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"TwilioTransport({self._sender})"

    @property
    def dedups_by_guid(self) -> bool:
        return False  # no idempotency key for messages

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_seconds), follow_redirects=False
            )
        return self._client

    async def send(self, part: OutgoingPart) -> SendResult:
        form = {"To": part.recipient, "Body": part.text, **self._sender}
        if self._status_callback is not None:
            form["StatusCallback"] = self._status_callback
        response = await _http.request(
            self._get_client(),
            "POST",
            self._url,
            platform="twilio",
            timeout_seconds=self.timeout_seconds,
            data=form,
            auth=self._auth,
        )
        data = _http.json_object(response)
        status = response.status_code
        if 200 <= status < 300:
            sid = data.get("sid")
            return SendResult(Outcome.SURFACED, message_id=str(sid) if sid else None)
        detail = f"twilio: HTTP {status}: {data.get('message') or response.reason_phrase}"
        if "code" in data:
            detail += f" (error {data['code']})"
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(detail, retry_after=retry_after)
        if status >= 500:
            raise ReceiverDown(detail)  # the platform is down: waited out, no attempt burned
        raise PermanentError(detail)

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        return None  # cannot tell reliably: an operator decides (docs/platforms.md)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _build(channel: ChannelConfig) -> TwilioTransport:
    options: TwilioOptions = channel.options
    return TwilioTransport(
        options.account_sid,
        secret_from_env(options.auth_token_env, f"channel {channel.name!r}"),
        from_number=options.from_number,
        messaging_service_sid=options.messaging_service_sid,
        base_url=options.base_url,
        timeout_seconds=channel.send_timeout_seconds,
        status_callback=options.status_callback,
    )


def _inbound(channel: ChannelConfig) -> InboundEndpoint:
    from relaybox.inbound.platforms.twilio import TwilioEndpoint

    options: TwilioOptions = channel.options
    where = f"channel {channel.name!r} (inbound)"
    token = secret_from_env(options.auth_token_env, where)
    return TwilioEndpoint(token, webhook_url=options.webhook_url)


TRANSPORT = TransportKind(
    name="twilio",
    build=_build,
    options=TwilioOptions,
    preset={"parts_per_second": 1.0, "max_part_chars": 1600},
    cost=segments,
    inbound=_inbound,
    summary="Twilio SMS over HTTP (httpx); paced by segments; no dedup, no read-back",
)
