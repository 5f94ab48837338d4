"""Contract subjects for the built-in transports: each adapter pointed at its local fake.

``async with telegram_subject() as subject: await run_check("sent", subject)`` runs one
contract check (:mod:`relaybox.testing.contract`) against the Telegram adapter and
:class:`~relaybox.testing.fakes.telegram.FakeTelegram` on a loopback port. A plugin author's
subject looks the same: see :class:`FakeSubject`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from relaybox.testing.contract import Scenario
from relaybox.testing.fakes.base import FakePlatform
from relaybox.testing.loopback import LoopbackReceiver, Response
from relaybox.transports.base import Transport

__all__ = ["SUBJECTS", "FakeSubject", "WebhookSubject"]

RECIPIENTS = {
    "telegram": ("1001", "999"),
    "slack": ("C0001", "C9999"),
    "discord": ("2001", "9999"),
    "twilio": ("+15550100", "+15559999"),
}


@dataclass
class FakeSubject:
    """A transport and the :class:`FakePlatform` it talks to."""

    fake: FakePlatform
    transport: Transport
    recipient: str
    unknown_recipient: str
    timeout_seconds: float
    reconciles: bool = False

    def next_answer(self, scenario: Scenario, *, retry_after: float = 2.0) -> None:
        self.fake.next_answer(scenario, retry_after=retry_after)

    def shown(self, recipient: str) -> list[str]:
        return self.fake.texts(recipient)


def _fake(platform: str, hang_seconds: float) -> FakePlatform:
    known = {RECIPIENTS[platform][0]}
    if platform == "telegram":
        from relaybox.testing.fakes.telegram import FakeTelegram

        return FakeTelegram(chats=known, hang_seconds=hang_seconds)
    if platform == "slack":
        from relaybox.testing.fakes.slack import FakeSlack

        return FakeSlack(channels=known, hang_seconds=hang_seconds)
    if platform == "discord":
        from relaybox.testing.fakes.discord import FakeDiscord

        return FakeDiscord(channels=known, bucket_size=50, hang_seconds=hang_seconds)
    from relaybox.testing.fakes.twilio import FakeTwilio

    return FakeTwilio(numbers=known, hang_seconds=hang_seconds)


def transport_for(fake: FakePlatform, timeout_seconds: float) -> Transport:
    """The built-in adapter for ``fake``'s platform, pointed at it."""
    creds: Any = fake
    if fake.platform == "telegram":
        from relaybox.transports.telegram import TelegramTransport

        return TelegramTransport(creds.token, base_url=fake.url, timeout_seconds=timeout_seconds)
    if fake.platform == "slack":
        from relaybox.transports.slack import SlackTransport

        return SlackTransport(
            creds.token, base_url=fake.url + "/api/", timeout_seconds=timeout_seconds
        )
    if fake.platform == "discord":
        from relaybox.transports.discord import DiscordTransport

        return DiscordTransport(creds.token, base_url=fake.url, timeout_seconds=timeout_seconds)
    from relaybox.transports.twilio import TwilioTransport

    return TwilioTransport(
        creds.account_sid,
        creds.auth_token,
        from_number="+15550000",
        base_url=fake.url,
        timeout_seconds=timeout_seconds,
    )


def platform_subject(
    platform: str, timeout_seconds: float = 1.0
) -> AbstractAsyncContextManager[FakeSubject]:
    @asynccontextmanager
    async def subject() -> AsyncIterator[FakeSubject]:
        fake = _fake(platform, hang_seconds=timeout_seconds + 2.0).serve()
        transport = transport_for(fake, timeout_seconds)
        known, unknown = RECIPIENTS[platform]
        try:
            reconciles = platform == "slack"
            yield FakeSubject(fake, transport, known, unknown, timeout_seconds, reconciles)
        finally:
            await transport.aclose()
            await asyncio.to_thread(fake.close)

    return subject()


@dataclass
class WebhookSubject:
    """The webhook transport against a :class:`LoopbackReceiver` (dedup by Idempotency-Key)."""

    receiver: LoopbackReceiver
    transport: Transport
    timeout_seconds: float
    recipient: str = "alice"
    unknown_recipient: str = "nobody"
    reconciles: bool = False
    _script: list[tuple[Scenario, float]] = field(default_factory=list)

    def next_answer(self, scenario: Scenario, *, retry_after: float = 2.0) -> None:
        self._script.append((scenario, retry_after))

    def shown(self, recipient: str) -> list[str]:
        return self.receiver.texts(f"thread-{recipient}")

    def behaviour(self, body: dict[str, Any]) -> Response | str | None:
        if body.get("recipient") == self.unknown_recipient:
            return 404, {}, b"unknown recipient"
        if not self._script:
            return None
        scenario, wait = self._script.pop(0)
        answers: dict[Scenario, Response | str | None] = {
            Scenario.RATE_LIMITED: (429, {"Retry-After": f"{wait:g}"}, b"slow down"),
            Scenario.SERVER_ERROR: (500, {}, b"oops"),
            Scenario.BAD_TOKEN: (401, {}, json.dumps({"error": "bad token"}).encode()),
            Scenario.UNKNOWN_CHAT: (404, {}, b"unknown recipient"),
            Scenario.LOST: "surface_and_hang",
            Scenario.HANG: "hang",
        }
        return answers.get(scenario)


@asynccontextmanager
async def webhook_subject(timeout_seconds: float = 1.0) -> AsyncIterator[WebhookSubject]:
    from relaybox.transports.webhook import WebhookTransport

    receiver = LoopbackReceiver(hang_seconds=timeout_seconds + 2.0).start()
    transport = WebhookTransport(receiver.url, timeout_seconds=timeout_seconds)
    subject = WebhookSubject(receiver, transport, timeout_seconds)
    receiver.behaviour = subject.behaviour  # type: ignore[assignment]
    try:
        yield subject
    finally:
        await transport.aclose()
        await asyncio.to_thread(receiver.stop)


SUBJECTS: dict[str, Callable[[], AbstractAsyncContextManager[Any]]] = {
    "webhook": webhook_subject,
    **{name: (lambda name=name: platform_subject(name)) for name in RECIPIENTS},  # type: ignore[misc]
}
"""Every built-in network transport's contract subject, by transport name."""
