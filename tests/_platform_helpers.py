"""Helpers for worker tests against the platform fakes: a channel table per platform, and a
worker (in this process or as ``relaybox worker`` subprocesses) delivering to a fake."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import relaybox
from relaybox.models import Status
from relaybox.testing.fakes.base import FakePlatform
from relaybox.testing.fakes.discord import FakeDiscord
from relaybox.testing.fakes.slack import FakeSlack
from relaybox.testing.fakes.telegram import FakeTelegram
from relaybox.testing.fakes.twilio import FakeTwilio

TOKENS = {
    "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN",
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "DISCORD_BOT_TOKEN": "discord-test-token",
    "TWILIO_AUTH_TOKEN": "twilio-test-token",
}


def make_fake(platform: str, **kw: Any) -> FakePlatform:
    kinds: dict[str, type[FakePlatform]] = {
        "telegram": FakeTelegram,
        "slack": FakeSlack,
        "discord": FakeDiscord,
        "twilio": FakeTwilio,
    }
    return kinds[platform](**kw)


def channel_table(platform: str, fake: FakePlatform, **overrides: Any) -> dict[str, Any]:
    """``[channels.<platform>]`` pointing at ``fake`` with fast retries."""
    table: dict[str, Any] = {
        "transport": platform,
        "base_url": fake.url + ("/api/" if platform == "slack" else ""),
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "jitter": 0.0,
        "send_timeout_seconds": 5.0,
    }
    if platform == "twilio":
        table.update(account_sid="AC00000000000000000000000000000000", from_number="+15550000")
    table.update(overrides)
    return table


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def config_text(platform: str, table: dict[str, Any], lease_seconds: float = 1.0) -> str:
    lines = [
        "[worker]",
        f"lease_seconds = {lease_seconds}",
        "shutdown_grace_seconds = 2",
        "poll_interval_seconds = 0.02",
        "",
        f"[channels.{platform}]",
    ]
    lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


async def deliver_all(
    rb: relaybox.Relaybox, ids: list[int], *, timeout: float = 30.0, concurrency: int = 8
) -> list[relaybox.models.Delivery]:
    """Run a worker in this process until every delivery in ``ids`` is final."""
    worker = relaybox.Worker(rb.store, rb.config, concurrency=concurrency)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + timeout
    try:
        while True:
            done = [await rb.delivery(i) for i in ids]
            if all(d.status not in (Status.QUEUED, Status.SENDING) for d in done):
                return done
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, [(d.id, d.status, d.last_error) for d in done]
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]
