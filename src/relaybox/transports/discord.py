"""Discord transport: create a channel message over Discord's HTTP API with httpx
(``relaybox[discord]``).

The contract
============

**Why not an SDK.** discord.py (and its forks) is a gateway client: it wants a long-lived
websocket session, its own event loop ownership and its own rate-limit handler that sleeps
and retries internally, none of which a relaybox worker needs to post one message. The HTTP
endpoint is one POST, so we call it with httpx, where the base URL (the fake in tests), the
timeouts and "never retry on your own" are ours to set.

**Request.** ``POST {base_url}/api/v10/channels/{recipient}/messages`` with
``Authorization: Bot <token>`` and ``{"content": text, "nonce": N, "enforce_nonce": true}``.
``N`` is the part's GUID in 22 characters (URL-safe base64 of its 16 bytes; Discord allows 25).
With ``enforce_nonce``, Discord answers a repeat of a nonce within a few minutes with the
message it already created instead of posting again: **a resend under the same GUID is safe**,
so relaybox resends after an ambiguous send instead of parking it. Keep retries inside that
window (the preset caps backoff at 60 s; an operator requeue hours later may post again).

**Answers.**

- 2xx: surfaced, message id = Discord's message id.
- 429: rate limited for the body's ``retry_after`` (or ``Retry-After``); no attempt burned.
- ``X-RateLimit-Remaining: 0`` on any answer: the route's bucket is empty until
  ``X-RateLimit-Reset-After``; the next send on that channel waits for it (briefly, inside the
  send) or is answered "rate limited" without a request.
- 5xx: transient. 4xx (401 bad token, 403 missing access, 404 unknown channel, 400 invalid
  body): permanent, with Discord's ``message`` and ``code`` kept.
- could not connect: transient; no answer after sending: ambiguous (then resent, see above).

**Preset limits** (overridable): 50 requests/s per bot, 1 message/s per channel (the common
5-per-5 s channel bucket), 2,000 characters per message, backoff capped at 60 s.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
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

__all__ = ["TRANSPORT", "DiscordOptions", "DiscordTransport", "nonce_for"]

DEFAULT_BASE_URL = "https://discord.com"
API = "/api/v10"
_USER_AGENT = "DiscordBot (https://github.com/relaybox/relaybox, 1) relaybox-discord"


def nonce_for(guid: str) -> str:
    """The Discord nonce of a part: its GUID's 16 bytes as 22 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(uuid.UUID(guid).bytes).decode().rstrip("=")


@dataclass(frozen=True)
class DiscordOptions:
    """``[channels.x]`` keys of a ``transport = "discord"`` channel."""

    token_env: str = "DISCORD_BOT_TOKEN"  # environment variable holding the bot token
    base_url: str = DEFAULT_BASE_URL
    public_key: str | None = None  # the application's Ed25519 public key, hex (inbound)
    interaction_ack: str = "On it."  # the ephemeral answer to a slash command (inbound)

    def __post_init__(self) -> None:
        if not is_http_url(self.base_url):
            raise ValueError("base_url must be an http:// or https:// URL")


class DiscordTransport:
    """Post parts as channel messages with a nonce. Safe to call concurrently."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 15.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._base = base_url.rstrip("/") + API
        self._headers = {"Authorization": f"Bot {token}", "User-Agent": _USER_AGENT}
        self._client = client
        self._owns_client = client is None
        self._bucket_reset: dict[str, float] = {}  # channel -> monotonic time its bucket refills

    def __repr__(self) -> str:
        return "DiscordTransport()"

    @property
    def dedups_by_guid(self) -> bool:
        return True  # nonce + enforce_nonce: Discord returns the first message for a repeat

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_seconds), follow_redirects=False
            )
        return self._client

    async def _wait_for_bucket(self, channel: str) -> None:
        wait = self._bucket_reset.get(channel, 0.0) - time.monotonic()
        if wait <= 0:
            return
        if wait > self.timeout_seconds / 2:
            raise RateLimited(
                f"discord: channel {channel} bucket empty for {wait:.2f}s", retry_after=wait
            )
        await asyncio.sleep(wait)

    def _note_bucket(self, channel: str, response: httpx.Response) -> None:
        if response.headers.get("X-RateLimit-Remaining") == "0":
            reset_after = parse_retry_after(response.headers.get("X-RateLimit-Reset-After"))
            if reset_after is not None:
                self._bucket_reset[channel] = time.monotonic() + reset_after
        else:
            self._bucket_reset.pop(channel, None)

    async def send(self, part: OutgoingPart) -> SendResult:
        channel = part.recipient
        await self._wait_for_bucket(channel)
        response = await _http.request(
            self._get_client(),
            "POST",
            f"{self._base}/channels/{channel}/messages",
            platform="discord",
            timeout_seconds=self.timeout_seconds,
            headers=self._headers,
            json={"content": part.text, "nonce": nonce_for(part.guid), "enforce_nonce": True},
        )
        self._note_bucket(channel, response)
        data = _http.json_object(response)
        status = response.status_code
        if 200 <= status < 300:
            message_id = data.get("id")
            return SendResult(
                Outcome.SURFACED, message_id=str(message_id) if message_id is not None else None
            )
        detail = f"discord: HTTP {status}: {data.get('message') or response.reason_phrase}"
        if "code" in data:
            detail += f" (code {data['code']})"
        if status == 429:
            wait = data.get("retry_after")
            retry_after = (
                float(wait)
                if isinstance(wait, int | float) and not isinstance(wait, bool)
                else parse_retry_after(response.headers.get("Retry-After"))
            )
            raise RateLimited(detail, retry_after=retry_after)
        if status >= 500:
            raise ReceiverDown(detail)  # the platform is down: waited out, no attempt burned
        raise PermanentError(detail)

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        # Not needed while resends are deduplicated by nonce; fetched messages carry no nonce.
        return None

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _build(channel: ChannelConfig) -> DiscordTransport:
    options: DiscordOptions = channel.options
    return DiscordTransport(
        secret_from_env(options.token_env, f"channel {channel.name!r}"),
        base_url=options.base_url,
        timeout_seconds=channel.send_timeout_seconds,
    )


def _inbound(channel: ChannelConfig) -> InboundEndpoint:
    from relaybox.errors import ConfigError
    from relaybox.inbound.platforms.discord import DiscordEndpoint

    options: DiscordOptions = channel.options
    if options.public_key is None:
        raise ConfigError(f"channel {channel.name!r} (inbound): set public_key")
    return DiscordEndpoint(options.public_key, ack_text=options.interaction_ack)


TRANSPORT = TransportKind(
    name="discord",
    build=_build,
    options=DiscordOptions,
    preset={
        "parts_per_second": 50.0,
        "thread_parts_per_second": 1.0,
        "max_part_chars": 2000,
        "backoff_max_seconds": 60.0,
    },
    inbound=_inbound,
    summary="Discord channel messages over HTTP (httpx); nonce + enforce_nonce dedup",
)
