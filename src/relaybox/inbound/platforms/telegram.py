"""Telegram webhook endpoint: secret token header, ``update_id`` dedup.

``setWebhook(url, secret_token=...)`` makes Telegram send ``X-Telegram-Bot-Api-Secret-Token``
with every update; a request without it (or with another value) is refused. Telegram resends
an update until it gets a 2xx, with the same ``update_id``: recorded once, then duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaybox.asgi import Request
from relaybox.inbound.platforms.base import (
    Answer,
    BadPayload,
    BadSignature,
    InboundEvent,
    json_body,
    same,
)


@dataclass(frozen=True)
class TelegramEndpoint:
    secret_token: str
    deadline_seconds: float = 10.0

    def verify(self, request: Request, now: float) -> None:
        if not same(self.secret_token, request.headers.get("x-telegram-bot-api-secret-token")):
            raise BadSignature("X-Telegram-Bot-Api-Secret-Token missing or wrong")

    def parse(self, request: Request) -> InboundEvent | Answer:
        update = json_body(request)
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise BadPayload("update without an integer update_id")
        message = update.get("message")
        if not isinstance(message, dict):
            return Answer(200)  # edits, callbacks, joins...: nothing to answer
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        if not isinstance(chat, dict) or "id" not in chat:
            raise BadPayload("message without chat.id")
        text = message.get("text")
        return InboundEvent(
            external_id=str(update_id),
            thread_id=f"chat-{chat['id']}",
            resource_id=str(chat["id"]),
            text=text if isinstance(text, str) else None,
            meta={
                "sender": str(sender.get("id")) if isinstance(sender, dict) else None,
                "message_id": message.get("message_id"),
                "chat_type": chat.get("type"),
            },
        )

    def ack(self, event: InboundEvent) -> Answer:
        return Answer(200)
