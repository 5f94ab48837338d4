"""Discord interactions endpoint: Ed25519 signature, interaction-id dedup, 3-second answer.

Discord signs ``<X-Signature-Timestamp><body>`` with the application's Ed25519 key
(``X-Signature-Ed25519``, hex); the public key is on the application's page. We also refuse
timestamps more than five minutes away, as for Slack. A PING is answered with a PONG; an
application command is recorded (its string options joined as the text) and acknowledged at
once with an ephemeral message (``ack_text``); the reply goes to the channel through the
outbox. Discord wants the answer within 3 seconds. Needs ``cryptography`` (``relaybox[discord]``).
"""

from __future__ import annotations

from typing import Any

from relaybox.asgi import Request
from relaybox.errors import ConfigError
from relaybox.inbound.platforms.base import (
    Answer,
    BadPayload,
    BadSignature,
    InboundEvent,
    check_age,
    json_body,
)

PING, APPLICATION_COMMAND = 1, 2
PONG, CHANNEL_MESSAGE = 1, 4
EPHEMERAL = 64


def _public_key(hex_key: str) -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "Discord inbound needs cryptography: pip install 'relaybox[discord]'"
        ) from error
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError as error:
        raise ConfigError(f"public_key is not a 32-byte hex Ed25519 key: {error}") from None


def _options_text(options: Any) -> str:
    """String values of a command's options (and sub-commands'), in order."""
    texts: list[str] = []
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict):
            if isinstance(option.get("value"), str):
                texts.append(option["value"])
            texts.extend(filter(None, [_options_text(option.get("options"))]))
    return " ".join(texts)


class DiscordEndpoint:
    def __init__(
        self, public_key: str, *, ack_text: str = "On it.", deadline_seconds: float = 3.0
    ) -> None:
        self._key = _public_key(public_key)
        self.ack_text = ack_text
        self.deadline_seconds = deadline_seconds

    def verify(self, request: Request, now: float) -> None:
        from cryptography.exceptions import InvalidSignature

        timestamp = request.headers.get("x-signature-timestamp")
        check_age(timestamp, now, "X-Signature-Timestamp")
        try:
            signature = bytes.fromhex(request.headers.get("x-signature-ed25519", ""))
            self._key.verify(signature, (timestamp or "").encode() + request.body)
        except (ValueError, InvalidSignature):
            raise BadSignature("X-Signature-Ed25519 does not match") from None

    def parse(self, request: Request) -> InboundEvent | Answer:
        data = json_body(request)
        kind = data.get("type")
        if kind == PING:
            return Answer(200, {"type": PONG})
        if kind != APPLICATION_COMMAND:
            return Answer(200, {"type": CHANNEL_MESSAGE, "data": {"content": self.ack_text}})
        interaction_id, channel = data.get("id"), data.get("channel_id")
        if not isinstance(interaction_id, str) or not isinstance(channel, str):
            raise BadPayload("interaction without id or channel_id")
        member = data.get("member") or {}
        user = (member.get("user") if isinstance(member, dict) else None) or data.get("user") or {}
        command = data.get("data") or {}
        return InboundEvent(
            external_id=interaction_id,
            thread_id=f"chat-{channel}",
            resource_id=channel,
            text=_options_text(command.get("options")) or f"/{command.get('name', '')}",
            meta={
                "sender": user.get("id") if isinstance(user, dict) else None,
                "command": command.get("name"),
                "guild": data.get("guild_id"),
            },
        )

    def ack(self, event: InboundEvent) -> Answer:
        body = {"type": CHANNEL_MESSAGE, "data": {"content": self.ack_text, "flags": EPHEMERAL}}
        return Answer(200, body)
