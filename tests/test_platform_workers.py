"""The platform adapters under a real worker, against their local fakes, on both stores.

* SIGKILL while a part is on the wire (the fake showed it; its answer never came), then a new
  worker: Discord resends under the same nonce and the fake shows nothing twice; Slack reads
  the part back (metadata) and records it delivered; Telegram and Twilio cannot tell, so the
  delivery is parked ``unknown`` with the user having seen the part once.
* Limits under load, measured by the fake's clock (arrival times it recorded): the platform
  presets (scaled up through relaybox.toml overrides, which also shows they are overridable),
  Discord's rate-limit buckets (no request refused), Twilio pacing by SMS segments, and a 429
  waited out for the platform's wait without burning an attempt.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

import relaybox
from _harness import WorkerProcess
from _platform_helpers import TOKENS, channel_table, config_text, deliver_all, gaps, make_fake
from relaybox.config import parse_config
from relaybox.models import Status
from relaybox.testing.contract import Scenario
from relaybox.testing.fakes.discord import FakeDiscord
from relaybox.transports.twilio import segments

RECIPIENT = {"telegram": "1001", "slack": "C0001", "discord": "2001", "twilio": "+15550100"}


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)


# -- SIGKILL during a send -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["discord", "slack", "telegram", "twilio"])
def test_sigkill_during_a_send(store_url: str, tmp_path: Path, platform: str) -> None:
    fake = make_fake(platform, hang_seconds=60.0).serve()
    try:
        config = tmp_path / "relaybox.toml"
        config.write_text(config_text(platform, channel_table(platform, fake)), encoding="utf-8")
        recipient = RECIPIENT[platform]

        async def enqueue() -> int:
            async with relaybox.open(store_url, config=str(config)) as rb:
                result = await rb.enqueue(
                    channel=platform,
                    thread_id="chat-1",
                    recipient=recipient,
                    parts=["first part", "second part"],
                    reply_key="r1",
                )
                return result.delivery.id

        delivery_id = asyncio.run(enqueue())
        fake.next_answer(Scenario.LOST)  # shown to the user; the answer never comes
        first = WorkerProcess("w1", store_url, config, tmp_path / "w1.log", 4).start()
        try:
            assert fake.wait_until_shown(1, timeout=30), first.output()
            first.kill()  # SIGKILL with the send in flight
        finally:
            if first.alive():
                first.kill()
        second = WorkerProcess("w2", store_url, config, tmp_path / "w2.log", 4).start()
        try:

            async def settled() -> relaybox.models.Delivery:
                async with relaybox.open(store_url, config=str(config)) as rb:
                    for _ in range(1500):
                        d = await rb.delivery(delivery_id)
                        if d.status not in (Status.QUEUED, Status.SENDING):
                            return d
                        await asyncio.sleep(0.02)
                raise AssertionError("the delivery did not settle")

            final = asyncio.run(settled())
            assert second.stop() == 0, second.output()
        finally:
            if second.alive():
                second.kill()
        screen = fake.texts(recipient)
    finally:
        fake.close()

    assert screen.count("first part") == 1, screen  # never shown twice
    if platform in ("discord", "slack"):
        assert final.status is Status.DELIVERED, final.last_error
        assert screen == ["first part", "second part"]
    else:
        assert final.status is Status.UNKNOWN, final.last_error
        assert "parked for an operator" in (final.last_error or "")
        assert screen == ["first part"]
    if platform == "discord":
        assert len(fake.wire) == 3  # the lost send, its resend (same nonce), the second part
        nonces = [m.extra["nonce"] for m in fake.shown()]
        assert len(set(nonces)) == 2


# -- limits under load, measured by the fake's clock ---------------------------------------


def open_for(store_url: str, platform: str, fake: Any, **overrides: Any) -> relaybox.Relaybox:
    table = channel_table(platform, fake, **overrides)
    config = parse_config(
        {
            "worker": {"lease_seconds": 5.0, "poll_interval_seconds": 0.02},
            "channels": {platform: table},
        }
    )
    return relaybox.open(store_url, config=config)


async def enqueue_many(
    rb: relaybox.Relaybox, platform: str, chats: dict[str, int], parts: int = 2
) -> list[int]:
    ids = []
    for chat, replies in chats.items():
        for n in range(replies):
            texts = [f"{chat} r{n} p{i}" for i in range(parts)]
            result = await rb.enqueue(
                channel=platform, thread_id=f"chat-{chat}", recipient=chat, parts=texts
            )
            ids.append(result.delivery.id)
    return ids


async def test_telegram_per_chat_per_group_and_per_bot_limits(store_url: str) -> None:
    rates = {"thread_parts_per_second": 20.0, "group_parts_per_minute": 600.0}
    with make_fake("telegram") as fake:
        async with open_for(store_url, "telegram", fake, parts_per_second=60.0, **rates) as rb:
            chats = {"1001": 3, "1002": 3, "-3003": 2}
            ids = await enqueue_many(rb, "telegram", chats)
            done = await deliver_all(rb, ids)
    assert {d.status for d in done} == {Status.DELIVERED}
    for chat, interval in (("1001", 1 / 20), ("1002", 1 / 20), ("-3003", 60 / 600)):
        times = [m.at for m in fake.shown(chat)]
        assert len(times) == chats[chat] * 2
        # Per-chat gaps count from each answer, so they hold by the fake's clock exactly
        # (less the event loop's timer resolution), even after a slow first connection.
        assert min(gaps(times)) >= interval - 0.005, (chat, gaps(times))
    everything = sorted(m.at for m in fake.shown())
    assert everything[-1] - everything[1] >= (len(everything) - 2) / 60.0 * 0.85


async def test_slack_per_channel_limit(store_url: str) -> None:
    with make_fake("slack") as fake:
        async with open_for(store_url, "slack", fake, thread_parts_per_second=25.0) as rb:
            ids = await enqueue_many(rb, "slack", {"C1": 3, "C2": 3})
            done = await deliver_all(rb, ids)
    assert {d.status for d in done} == {Status.DELIVERED}
    for channel in ("C1", "C2"):
        times = [m.at for m in fake.shown(channel)]
        assert len(times) == 6 and min(gaps(times)) >= 0.04 - 0.005, gaps(times)


async def test_discord_buckets_are_never_overrun(store_url: str) -> None:
    # The fake refuses a 6th message per channel within 1 s; the preset pacing is raised so
    # that only the adapter's reading of X-RateLimit-* headers keeps the worker inside it.
    fake = FakeDiscord(bucket_size=5, bucket_seconds=1.0).serve()
    try:
        async with open_for(
            store_url, "discord", fake, thread_parts_per_second=100.0, parts_per_second=100.0
        ) as rb:
            ids = await enqueue_many(rb, "discord", {"2001": 6, "2002": 2})
            done = await deliver_all(rb, ids)
    finally:
        fake.close()
    assert {d.status for d in done} == {Status.DELIVERED}
    assert fake.over_limit == 0
    times = [m.at for m in fake.shown("2001")]
    assert len(times) == 12
    for first, sixth in zip(times[1:], times[6:], strict=False):
        assert sixth - first >= 1.0 * 0.9  # never more than 5 in one bucket window


async def test_twilio_is_paced_by_segments(store_url: str) -> None:
    long_text = "word " * 80  # 400 GSM-7 characters: 3 segments
    with make_fake("twilio") as fake:
        async with open_for(store_url, "twilio", fake, parts_per_second=20.0) as rb:
            result = await rb.enqueue(
                channel="twilio",
                thread_id="chat-a",
                recipient="+15550100",
                parts=["short one", long_text.strip(), "short two", "short three"],
            )
            done = await deliver_all(rb, [result.delivery.id])
    assert done[0].status is Status.DELIVERED
    shown = fake.shown()
    assert [segments(m.text) for m in shown] == [1, 3, 1, 1]
    times = [m.at for m in shown]
    # The first request also opens the connection, so it may arrive late and its gap to the
    # second shrink: check the gaps after it, and the whole span.
    for message, gap in list(zip(shown, gaps(times), strict=False))[1:]:
        assert gap >= segments(message.text) / 20.0 * 0.6, (message.text[:10], gap)
    assert times[-1] - times[1] >= (3 + 1) / 20.0 * 0.85


@pytest.mark.parametrize("platform", ["telegram", "slack", "discord"])
async def test_429_is_waited_out_without_burning_an_attempt(store_url: str, platform: str) -> None:
    with make_fake(platform) as fake:
        async with open_for(store_url, platform, fake, max_attempts=1) as rb:
            fake.next_answer(Scenario.RATE_LIMITED, retry_after=1.0)
            ids = await enqueue_many(rb, platform, {RECIPIENT[platform]: 1}, parts=1)
            [done] = await deliver_all(rb, ids)
            attempts = await rb.attempts(ids[0])
    # max_attempts = 1: had the 429 burned the only attempt, the delivery would have failed.
    assert done.status is Status.DELIVERED, done.last_error
    assert [a.outcome for a in attempts] == ["rate_limited", "surfaced"]
    refused, accepted = fake.wire[0].received_at, fake.shown()[0].at
    assert accepted - refused >= 1.0 * 0.95  # the platform's wait, by the fake's clock
    assert os.environ["TELEGRAM_BOT_TOKEN"]
