"""Inbound webhooks of the chat platforms (relaybox.inbound.webhooks), on both stores.

Each platform's signature is checked (bad or missing: 401 and nothing stored), a message is
recorded once by the platform's id and handed to the handler as a turn, a replay is a
duplicate (answered, not handled again), and the answer does not wait for the agent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import relaybox
from relaybox.config import parse_config
from relaybox.errors import ConfigError
from relaybox.inbound.platforms.slack import slack_signature
from relaybox.inbound.platforms.twilio import twilio_signature
from relaybox.inbound.query import list_inbound
from relaybox.inbound.webhooks import InboundApp, inbound_app
from relaybox.testing.fakes._asgi import ServedApp

SLACK_SECRET = "slack-signing-secret"
TELEGRAM_SECRET = "telegram-secret-token"
TWILIO_TOKEN = "twilio-auth-token"
BASE = "http://relaybox.test"
DISCORD_KEY = Ed25519PrivateKey.generate()
DISCORD_PUBLIC = DISCORD_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def config() -> relaybox.config.Config:
    return parse_config(
        {
            "channels": {
                "tg": {"transport": "telegram"},
                "sl": {"transport": "slack"},
                "tw": {
                    "transport": "twilio",
                    "account_sid": "AC1",
                    "from_number": "+15550000",
                    "webhook_url": f"{BASE}/inbound/tw",
                },
                "dc": {"transport": "discord", "public_key": DISCORD_PUBLIC},
                "mem": {"transport": "memory"},
            }
        }
    )


@dataclass
class Signed:
    path: str
    body: bytes
    headers: dict[str, str]


def telegram(update_id: int = 7, secret: str | None = TELEGRAM_SECRET, **_: Any) -> Signed:
    body = json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": 1,
                "chat": {"id": 4242, "type": "private"},
                "from": {"id": 4242},
                "text": "hello telegram",
            },
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return Signed("/inbound/tg", body, headers)


def slack(
    event_id: str = "Ev1", secret: str | None = SLACK_SECRET, age: float = 0.0, **extra: Any
) -> Signed:
    event = {"type": "message", "channel": "C1", "user": "U1", "text": "hello slack", **extra}
    body = json.dumps({"type": "event_callback", "event_id": event_id, "event": event}).encode()
    timestamp = str(int(time.time() - age))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp}
    if secret is not None:
        headers["X-Slack-Signature"] = slack_signature(secret, timestamp, body)
    return Signed("/inbound/sl", body, headers)


def twilio(sid: str = "SM1", token: str | None = TWILIO_TOKEN, **_: Any) -> Signed:
    params = [("MessageSid", sid), ("From", "+15550100"), ("To", "+15550000"), ("Body", "hi sms")]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["X-Twilio-Signature"] = twilio_signature(token, f"{BASE}/inbound/tw", params)
    return Signed("/inbound/tw", urlencode(params).encode(), headers)


def discord(
    interaction_id: str = "I1",
    key: Ed25519PrivateKey | None = DISCORD_KEY,
    age: float = 0.0,
    kind: int = 2,
    **_: Any,
) -> Signed:
    body = json.dumps(
        {
            "id": interaction_id,
            "type": kind,
            "channel_id": "D1",
            "member": {"user": {"id": "U9"}},
            "data": {"name": "ask", "options": [{"name": "q", "value": "hello discord"}]},
        }
    ).encode()
    timestamp = str(int(time.time() - age))
    headers = {"Content-Type": "application/json", "X-Signature-Timestamp": timestamp}
    if key is not None:
        headers["X-Signature-Ed25519"] = key.sign(timestamp.encode() + body).hex()
    return Signed("/inbound/dc", body, headers)


PLATFORMS: dict[str, tuple[str, Callable[..., Signed], str]] = {
    "telegram": ("tg", telegram, "hello telegram"),
    "slack": ("sl", slack, "hello slack"),
    "twilio": ("tw", twilio, "hi sms"),
    "discord": ("dc", discord, "hello discord"),
}


@pytest.fixture
async def setup(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[relaybox.Relaybox, InboundApp, list[str]]]:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", TELEGRAM_SECRET)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    handled: list[str] = []

    async def handler(turn: relaybox.Turn) -> None:
        handled.append(turn.inbound.text or "")
        await turn.reply([f"you said: {turn.inbound.text}"])

    async with relaybox.open(store_url, config=config()) as rb:
        app = inbound_app(rb, handler)
        yield rb, app, handled
        await app.drain()


async def post(app: InboundApp, signed: Signed) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        return await client.post(signed.path, content=signed.body, headers=signed.headers)


async def stored(rb: relaybox.Relaybox) -> list[Any]:
    return await rb.store.read(list_inbound())


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
async def test_signed_message_is_recorded_once_and_handed_off(setup: Any, platform: str) -> None:
    rb, app, handled = setup
    channel, make, text = PLATFORMS[platform]
    first = await post(app, make())
    assert first.status_code == 200, first.text
    await app.drain()
    assert handled == [text]
    replay = await post(app, make())  # the platform retries, or an attacker replays
    assert replay.status_code == 200 and replay.content == first.content
    await app.drain()
    assert handled == [text]  # not handled twice
    [message] = await stored(rb)
    assert message.channel == channel and message.duplicate_count == 1
    assert message.replies == 1
    if platform == "twilio":
        assert first.headers["content-type"].startswith("text/xml")
        assert b"<Response>" in first.content
    if platform == "discord":
        assert first.json()["type"] == 4 and first.json()["data"]["flags"] == 64


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
async def test_bad_or_missing_signature_is_401_and_nothing_stored(
    setup: Any, platform: str
) -> None:
    rb, app, handled = setup
    _, make, _ = PLATFORMS[platform]
    wrong = {
        "telegram": {"secret": "guess"},
        "slack": {"secret": "guess"},
        "twilio": {"token": "guess"},
        "discord": {"key": Ed25519PrivateKey.generate()},
    }[platform]
    missing = {"secret": None, "token": None, "key": None}
    for signed in (make(**wrong), make(**missing)):
        answer = await post(app, signed)
        assert answer.status_code == 401, answer.text
        assert "bad signature" in answer.json()["error"]
    if platform != "telegram":  # Telegram sends a shared secret, it does not sign the body
        tampered = make()
        tampered.body = tampered.body.replace(b"hello", b"HELLO").replace(b"hi+sms", b"hi+SMS")
        assert (await post(app, tampered)).status_code == 401
    await app.drain()
    assert handled == [] and await stored(rb) == []


@pytest.mark.parametrize("platform", ["slack", "discord"])
async def test_signed_but_older_than_five_minutes_is_refused(setup: Any, platform: str) -> None:
    rb, app, _handled = setup
    _, make, _ = PLATFORMS[platform]
    answer = await post(app, make(age=301.0))
    assert answer.status_code == 401 and "5 minutes" in answer.json()["error"]
    assert await stored(rb) == []
    assert (await post(app, make(age=200.0))).status_code == 200


async def test_platform_checks_are_answered_without_recording(setup: Any) -> None:
    rb, app, handled = setup
    body = json.dumps({"type": "url_verification", "challenge": "xyz"}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(SLACK_SECRET, timestamp, body),
    }
    assert (await post(app, Signed("/inbound/sl", body, headers))).json() == {"challenge": "xyz"}
    assert (await post(app, discord(kind=1))).json() == {"type": 1}
    bot_echo = slack(event_id="Ev2", bot_id="B1")  # our own reply coming back
    assert (await post(app, bot_echo)).status_code == 200
    await app.drain()
    assert handled == [] and await stored(rb) == []


async def test_answer_does_not_wait_for_the_agent(store_url: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", TELEGRAM_SECRET)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_agent(turn: relaybox.Turn) -> None:
        started.set()
        await release.wait()
        await turn.reply(["finally"])

    async with relaybox.open(store_url, config=config()) as rb:
        app = inbound_app(rb, slow_agent, channels=["tg"])
        answer = await post(app, telegram())
        assert answer.status_code == 200
        await asyncio.wait_for(started.wait(), 5)  # the agent is still running
        [message] = await stored(rb)
        assert message.replies == 0
        release.set()
        await app.drain()
        [message] = await stored(rb)
        assert message.replies == 1


async def test_served_over_real_http_and_unknown_paths(setup: Any) -> None:
    _rb, app, handled = setup
    with ServedApp(app) as served:
        async with httpx.AsyncClient(base_url=served.url) as client:
            signed = telegram(update_id=99)
            answer = await client.post("/tg", content=signed.body, headers=signed.headers)
            assert answer.status_code == 200
            assert (await client.post("/mem", content=b"{}")).status_code == 404
            assert (await client.get("/tg")).status_code == 405
            bad = await client.post("/tg", content=b"[1]", headers=signed.headers)
            assert bad.status_code == 400
        await app.drain()
    assert handled == ["hello telegram"]


def test_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    rb = relaybox.Relaybox.__new__(relaybox.Relaybox)
    rb.config = config()

    async def handler(turn: relaybox.Turn) -> None:
        raise AssertionError("never called")

    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET is not set"):
        inbound_app(rb, handler, channels=["tg"])
    with pytest.raises(ConfigError, match="has no inbound webhook"):
        inbound_app(rb, handler, channels=["mem"])


async def test_a_store_too_slow_for_the_deadline_gets_503_and_the_retry_is_a_duplicate(
    store_url: str,
) -> None:
    """Recording is the durability boundary: never answer 2xx before it commits. Past the
    platform's deadline the answer is 503 (the platform retries); the late record still lands
    and the retry finds it."""
    from relaybox.inbound.platforms.telegram import TelegramEndpoint

    handled: list[str] = []
    release = asyncio.Event()

    async def handler(turn: relaybox.Turn) -> None:
        handled.append(turn.inbound.external_id)

    async with relaybox.open(store_url, config=config()) as rb:
        real_turn = rb.turn

        class SlowScope:
            def __init__(self, scope: Any) -> None:
                self.scope = scope

            async def __aenter__(self) -> Any:
                await release.wait()  # the store is stuck until the test lets it go
                return await self.scope.__aenter__()

            async def __aexit__(self, *exc_info: Any) -> Any:
                return await self.scope.__aexit__(*exc_info)

        class SlowStore:
            config = rb.config

            def turn(self, **kw: Any) -> SlowScope:
                return SlowScope(real_turn(**kw))

        endpoint = TelegramEndpoint(TELEGRAM_SECRET, deadline_seconds=0.5)
        app = InboundApp(SlowStore(), handler, {"tg": endpoint})  # type: ignore[arg-type]
        started = time.monotonic()
        answer = await post(app, telegram(update_id=11))
        assert answer.status_code == 503 and time.monotonic() - started < 0.5
        release.set()
        await app.drain()
        assert handled == ["11"]  # the late record landed and was handled once
        retry = await post(app, telegram(update_id=11))
        await app.drain()
        assert retry.status_code == 200 and handled == ["11"]
        [message] = await stored(rb)
        assert message.duplicate_count == 1
