"""Platform limits as the platform sees them: pacing measured by the fakes' clocks.

    python -m benchmarks.platform_pacing      # about 25 s; SQLite in a temp dir

A worker delivers to each local platform fake (relaybox.testing.fakes) at the transports'
real presets, and the gaps are read from the times the fake recorded each message arriving:

* Telegram: 6 messages in one private chat (preset 1/s per chat), 2 in a group (20/min);
* Discord: 12 messages into one channel with relaybox's own pacing raised to 100/s, against
  the fake's bucket of 5 per 5 s: how many requests the fake refused with 429;
* Twilio: parts of 1, 3 and 1 SMS segments at the preset 1 segment/s per sending number.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from typing import Any

import relaybox
from relaybox.config import parse_config
from relaybox.models import Status
from relaybox.testing.fakes.base import FakePlatform
from relaybox.testing.fakes.discord import FakeDiscord
from relaybox.testing.fakes.telegram import FakeTelegram
from relaybox.testing.fakes.twilio import FakeTwilio


def _channel(platform: str, fake: FakePlatform, **overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"transport": platform, "base_url": fake.url}
    if platform == "twilio":
        table.update(account_sid="AC00000000000000000000000000000000", from_number="+15550000")
    return {**table, **overrides}


async def _deliver(
    platform: str, fake: FakePlatform, replies: dict[str, list[str]], **kw: Any
) -> float:
    config = parse_config(
        {
            "worker": {"poll_interval_seconds": 0.02},
            "channels": {platform: _channel(platform, fake, **kw)},
        }
    )
    url = f"sqlite:///{tempfile.mkdtemp()}/relaybox.db"
    async with relaybox.open(url, config=config) as rb:
        ids = []
        for chat, parts in replies.items():
            result = await rb.enqueue(
                channel=platform, thread_id=f"chat-{chat}", recipient=chat, parts=parts
            )
            ids.append(result.delivery.id)
        worker = relaybox.Worker(rb.store, rb.config)
        task = asyncio.create_task(worker.run())
        started = time.monotonic()
        while True:
            done = [await rb.delivery(i) for i in ids]
            if all(d.status not in (Status.QUEUED, Status.SENDING) for d in done):
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await task
        return time.monotonic() - started


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


async def main() -> None:
    os.environ.update(
        TELEGRAM_BOT_TOKEN="123456:TEST-TOKEN",
        DISCORD_BOT_TOKEN="discord-test-token",
        TWILIO_AUTH_TOKEN="twilio-test-token",
    )
    with FakeTelegram() as telegram:
        took = await _deliver(
            "telegram",
            telegram,
            {"1001": [f"p{i}" for i in range(6)], "-2002": ["g1", "g2"]},
        )
        for chat in ("1001", "-2002"):
            gaps = _gaps([m.at for m in telegram.shown(chat)])
            print(f"telegram chat {chat}: gaps {gaps} s")
        print(f"  ({took:.1f} s)")
    discord = FakeDiscord(bucket_size=5, bucket_seconds=5.0).serve()
    try:
        took = await _deliver(
            "discord",
            discord,
            {"2001": [f"p{i}" for i in range(12)]},
            thread_parts_per_second=100.0,
            parts_per_second=100.0,
        )
        times = [m.at for m in discord.shown("2001")]
        spans = [round(b - a, 3) for a, b in zip(times, times[5:], strict=False)]
        print(f"discord: {len(times)} shown, refused by the fake's bucket: {discord.over_limit},")
        print(f"  shortest span of 6 consecutive messages {min(spans)} s ({took:.1f} s)")
    finally:
        discord.close()
    with FakeTwilio() as twilio:
        long_text = ("word " * 80).strip()
        took = await _deliver("twilio", twilio, {"+15550100": ["hi", long_text, "bye"]})
        shown = twilio.shown()
        print(
            f"twilio: segments {[m.extra['segments'] for m in shown]},"
            f" gaps {_gaps([m.at for m in shown])} s ({took:.1f} s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
