"""A fake Telegram Bot API (``/bot<token>/<method>``): ``sendMessage`` and ``getMe``.

Answers like api.telegram.org: ``{"ok": true, "result": {...}}``; errors as
``{"ok": false, "error_code": N, "description": "..."}`` with ``parameters.retry_after`` on
429. A bot cannot read a chat's history back, so this fake offers no way to, either.
"""

from __future__ import annotations

import time
from typing import Any

from relaybox.asgi import Request, Send, send_response
from relaybox.testing.contract import Scenario
from relaybox.testing.fakes.base import FakePlatform, Shown


def _error(code: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


class FakeTelegram(FakePlatform):
    """Point ``python-telegram-bot`` at ``base_url = fake.url`` (the adapter adds ``/bot``)."""

    platform = "telegram"

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        *,
        chats: set[str] | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.token = token
        self.chats = chats  # None: every chat exists

    async def route(self, request: Request, send: Send) -> None:
        prefix, _, method = request.path.rpartition("/")
        if not prefix.startswith("/bot"):
            await send_response(send, 404, _error(404, "Not Found"))
            return
        if prefix.removeprefix("/bot") != self.token:
            await send_response(send, 401, _error(401, "Unauthorized"))
            return
        if method == "getMe":
            me = {"id": 123456, "is_bot": True, "first_name": "Fake", "username": "fake_bot"}
            await send_response(send, 200, {"ok": True, "result": me})
        elif method == "sendMessage":
            await self._send_message(request, send)
        else:
            await send_response(send, 404, _error(404, "Not Found: method not found"))

    async def _send_message(self, request: Request, send: Send) -> None:
        params = request.params()
        chat = str(params.get("chat_id", ""))
        text = str(params.get("text", ""))
        script = self.take_script(request)
        scenario = script.scenario if script else Scenario.OK
        if scenario is Scenario.HANG:
            await self.hang()
            await send_response(send, 504, _error(504, "Gateway Timeout"))
            return
        if scenario is Scenario.RATE_LIMITED:
            wait = int(script.retry_after) if script else 2
            body = _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
            await send_response(send, 429, body)
            return
        if scenario is Scenario.SERVER_ERROR:
            await send_response(send, 500, _error(500, "Internal Server Error"))
            return
        if scenario is Scenario.BAD_TOKEN:
            await send_response(send, 401, _error(401, "Unauthorized"))
            return
        if scenario is Scenario.UNKNOWN_CHAT or (self.chats is not None and chat not in self.chats):
            await send_response(send, 400, _error(400, "Bad Request: chat not found"))
            return
        if not text:
            await send_response(send, 400, _error(400, "Bad Request: message text is empty"))
            return
        if len(text) > 4096:
            await send_response(send, 400, _error(400, "Bad Request: message is too long"))
            return
        message_id = self.new_id()
        self.show(Shown(chat, text, str(message_id), request.received_at))
        if scenario is Scenario.LOST:
            await self.hang()
            await send_response(send, 504, _error(504, "Gateway Timeout"))
            return
        chat_type = "group" if chat.startswith("-") else "private"
        result = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(chat) if chat.lstrip("-").isdigit() else 0, "type": chat_type},
            "text": text,
        }
        await send_response(send, 200, {"ok": True, "result": result})
