"""A fake Slack Web API: ``chat.postMessage`` and ``conversations.history`` under ``/api/``.

Answers like slack.com: HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error":
"channel_not_found"}``; 429 with a ``Retry-After`` header; message metadata kept and returned
by ``conversations.history`` when ``include_all_metadata`` is set.
"""

from __future__ import annotations

from typing import Any

from relaybox.asgi import Request, Send, send_response
from relaybox.testing.contract import Scenario
from relaybox.testing.fakes.base import FakePlatform, Shown


class FakeSlack(FakePlatform):
    """Point ``slack_sdk`` at ``base_url = fake.url + "/api/"``."""

    platform = "slack"

    def __init__(
        self,
        token: str = "xoxb-test-token",
        *,
        channels: set[str] | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.token = token
        self.channels = channels  # None: every channel exists
        self._ts = 1_700_000_000_000_000

    async def route(self, request: Request, send: Send) -> None:
        method = request.path.removeprefix("/api/")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            await send_response(send, 200, {"ok": False, "error": "invalid_auth"})
            return
        if method == "chat.postMessage":
            await self._post_message(request, send)
        elif method == "conversations.history":
            await self._history(request, send)
        else:
            await send_response(send, 404, {"ok": False, "error": "unknown_method"})

    def _known(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels

    async def _post_message(self, request: Request, send: Send) -> None:
        params = request.params()
        channel = str(params.get("channel", ""))
        text = str(params.get("text", ""))
        script = self.take_script(request)
        scenario = script.scenario if script else Scenario.OK
        if scenario is Scenario.HANG:
            await self.hang()
            await send_response(send, 504, {"ok": False, "error": "request_timeout"})
            return
        if scenario is Scenario.RATE_LIMITED:
            wait = int(script.retry_after) if script else 2
            body = {"ok": False, "error": "ratelimited"}
            await send_response(send, 429, body, {"Retry-After": str(wait)})
            return
        if scenario is Scenario.SERVER_ERROR:
            await send_response(send, 500, {"ok": False, "error": "internal_error"})
            return
        if scenario is Scenario.BAD_TOKEN:
            await send_response(send, 200, {"ok": False, "error": "invalid_auth"})
            return
        if scenario is Scenario.UNKNOWN_CHAT or not self._known(channel):
            await send_response(send, 200, {"ok": False, "error": "channel_not_found"})
            return
        if not text:
            await send_response(send, 200, {"ok": False, "error": "no_text"})
            return
        self._ts += 100
        ts = f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"
        metadata = params.get("metadata")
        extra: dict[str, Any] = {"metadata": metadata} if isinstance(metadata, dict) else {}
        self.show(Shown(channel, text, ts, request.received_at, extra))
        if scenario is Scenario.LOST:
            await self.hang()
            await send_response(send, 504, {"ok": False, "error": "request_timeout"})
            return
        message = {"type": "message", "text": text, "ts": ts, **extra}
        await send_response(
            send, 200, {"ok": True, "channel": channel, "ts": ts, "message": message}
        )

    async def _history(self, request: Request, send: Send) -> None:
        params = request.params()
        channel = str(params.get("channel", ""))
        if not self._known(channel):
            await send_response(send, 200, {"ok": False, "error": "channel_not_found"})
            return
        limit = int(params.get("limit", 100) or 100)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        newest_first = list(reversed(self.shown(channel)))
        page = newest_first[:limit]
        messages = [
            {
                "type": "message",
                "text": m.text,
                "ts": m.message_id,
                **({"metadata": m.extra["metadata"]} if with_metadata and m.extra else {}),
            }
            for m in page
        ]
        body = {"ok": True, "messages": messages, "has_more": len(newest_first) > limit}
        await send_response(send, 200, body)
