"""A fake Discord HTTP API: ``POST /api/v10/channels/{id}/messages`` (and interactions, inbound).

Like discord.com it honours ``nonce`` + ``enforce_nonce`` (a repeat within
``nonce_window_seconds`` returns the first message and shows nothing new), keeps a per-channel
rate-limit bucket (``bucket_size`` messages per ``bucket_seconds``) reported in
``X-RateLimit-*`` headers, and answers an over-limit request with 429 and ``retry_after``.
"""

from __future__ import annotations

import re
import time

from relaybox.asgi import Request, Send, send_response
from relaybox.testing.contract import Scenario
from relaybox.testing.fakes.base import FakePlatform, Shown

_ROUTE = re.compile(r"^/api/v10/channels/([^/]+)/messages$")


class FakeDiscord(FakePlatform):
    """Point the adapter at ``base_url = fake.url``."""

    platform = "discord"

    def __init__(
        self,
        token: str = "discord-test-token",
        *,
        channels: set[str] | None = None,
        bucket_size: int = 5,
        bucket_seconds: float = 5.0,
        nonce_window_seconds: float = 300.0,
        hang_seconds: float = 30.0,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.token = token
        self.channels = channels
        self.bucket_size = bucket_size
        self.bucket_seconds = bucket_seconds
        self.nonce_window_seconds = nonce_window_seconds
        self.over_limit = 0  # requests refused with 429 because a bucket was empty
        self._buckets: dict[str, list[float]] = {}
        self._snowflake = 1_100_000_000_000_000_000

    def _bucket_headers(self, channel: str, now: float) -> tuple[dict[str, str], float | None]:
        """Headers for ``channel``'s bucket; the wait if it is already empty."""
        window = [t for t in self._buckets.get(channel, []) if now - t < self.bucket_seconds]
        self._buckets[channel] = window
        reset_after = (window[0] + self.bucket_seconds - now) if window else self.bucket_seconds
        remaining = self.bucket_size - len(window)
        headers = {
            "X-RateLimit-Limit": str(self.bucket_size),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"channel-{channel}",
        }
        return headers, (reset_after if remaining <= 0 else None)

    async def route(self, request: Request, send: Send) -> None:
        match = _ROUTE.match(request.path)
        if match is None or request.method != "POST":
            await send_response(send, 404, {"message": "404: Not Found", "code": 0})
            return
        if request.headers.get("authorization") != f"Bot {self.token}":
            await send_response(send, 401, {"message": "401: Unauthorized", "code": 0})
            return
        await self._create_message(match.group(1), request, send)

    async def _create_message(self, channel: str, request: Request, send: Send) -> None:
        params = request.params()
        text = str(params.get("content", ""))
        nonce = params.get("nonce")
        script = self.take_script(request)
        scenario = script.scenario if script else Scenario.OK
        if scenario is Scenario.HANG:
            await self.hang()
            await send_response(send, 504, {"message": "Gateway Timeout", "code": 0})
            return
        if scenario is Scenario.RATE_LIMITED:
            wait = script.retry_after if script else 2.0
            body = {"message": "You are being rate limited.", "retry_after": wait, "global": False}
            await send_response(send, 429, body, {"Retry-After": str(int(wait + 0.999))})
            return
        if scenario is Scenario.SERVER_ERROR:
            await send_response(send, 502, {"message": "502: Bad Gateway", "code": 0})
            return
        if scenario is Scenario.BAD_TOKEN:
            await send_response(send, 401, {"message": "401: Unauthorized", "code": 0})
            return
        if scenario is Scenario.UNKNOWN_CHAT or (
            self.channels is not None and channel not in self.channels
        ):
            await send_response(send, 404, {"message": "Unknown Channel", "code": 10003})
            return
        now = time.monotonic()
        if params.get("enforce_nonce") and nonce is not None:
            first = self.find(
                lambda m: (
                    m.chat == channel
                    and m.extra.get("nonce") == nonce
                    and now - m.at < self.nonce_window_seconds
                )
            )
            if first is not None:
                headers, _ = self._bucket_headers(channel, now)
                await send_response(send, 200, self._message(first), headers)
                return
        headers, empty_for = self._bucket_headers(channel, now)
        if empty_for is not None:
            self.over_limit += 1
            body = {"message": "You are being rate limited.", "retry_after": empty_for}
            await send_response(send, 429, {**body, "global": False}, headers)
            return
        if not text or len(text) > 2000:
            body = {"message": "Invalid Form Body", "code": 50035}
            await send_response(send, 400, body, headers)
            return
        self._buckets[channel].append(now)
        headers, _ = self._bucket_headers(channel, now)
        self._snowflake += 1
        shown = self.show(
            Shown(channel, text, str(self._snowflake), request.received_at, {"nonce": nonce})
        )
        if scenario is Scenario.LOST:
            await self.hang()
            await send_response(send, 504, {"message": "Gateway Timeout", "code": 0})
            return
        await send_response(send, 200, self._message(shown), headers)

    @staticmethod
    def _message(shown: Shown) -> dict[str, object]:
        return {
            "id": shown.message_id,
            "channel_id": shown.chat,
            "content": shown.text,
            "nonce": shown.extra.get("nonce"),
            "type": 0,
        }
