"""A Telegram bot on relaybox, end to end, offline: one command, no token, no network.

    python examples/telegram_bot.py [--db postgresql://...]

* **Telegram** is :class:`relaybox.testing.fakes.telegram.FakeTelegram` on a loopback port: the
  bot's transport is pointed at it (``base_url``), and this script plays Telegram's side of the
  webhook too (it POSTs an update with the secret token header, and posts it again, as
  Telegram does when an answer is slow).
* The **bot** is ``inbound_app(rb, handle_turn)`` (relaybox.inbound.webhooks) served on
  another loopback port: it checks the secret, records each update once, and hands it to
  ``handle_turn``, which replies in two parts through the outbox.
* The **worker** delivers the reply with the Telegram preset limits (1 message/s per chat).

Swap the fake for the real thing by removing ``base_url`` and setting the two environment
variables (docs/platforms.md#telegram).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import httpx

import relaybox
from relaybox.config import parse_config
from relaybox.inbound.webhooks import inbound_app
from relaybox.testing.fakes._asgi import ServedApp
from relaybox.testing.fakes.telegram import FakeTelegram

SECRET = "example-webhook-secret"


async def handle_turn(turn: relaybox.Turn) -> None:
    """The agent: any framework would do; here, two canned parts."""
    question = turn.inbound.text or ""
    await turn.reply([f"You asked: {question!r}.", "Here is my answer, in a second message."])


async def main(db: str) -> int:
    telegram = FakeTelegram(chats={"4242"}).serve()
    os.environ.setdefault("TELEGRAM_BOT_TOKEN", telegram.token)
    os.environ.setdefault("TELEGRAM_WEBHOOK_SECRET", SECRET)
    config = parse_config(
        {"channels": {"telegram": {"transport": "telegram", "base_url": telegram.url}}}
    )
    try:
        async with relaybox.open(db, config=config) as rb:
            app = inbound_app(rb, handle_turn)
            worker = relaybox.Worker(rb.store, rb.config)
            worker_task = asyncio.create_task(worker.run())
            with ServedApp(app) as bot:
                update = {
                    "update_id": 1001,
                    "message": {
                        "message_id": 7,
                        "chat": {"id": 4242, "type": "private"},
                        "from": {"id": 4242},
                        "text": "what's the weather in Oslo?",
                    },
                }
                headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
                async with httpx.AsyncClient(base_url=bot.url) as client:
                    first = await client.post("/telegram", json=update, headers=headers)
                    again = await client.post("/telegram", json=update, headers=headers)
                    forged = await client.post("/telegram", json=update)
                print(f"Telegram -> bot, update 1001: {first.status_code}")
                print(f"Telegram -> bot, update 1001 again: {again.status_code} (a duplicate)")
                print(f"someone else -> bot, no secret: {forged.status_code}")
                await app.drain()
                shown = await asyncio.to_thread(telegram.wait_until_shown, 2, 30.0)
            worker.stop()
            await worker_task
    finally:
        telegram.close()
    print("What the user saw in chat 4242:")
    for number, seen in enumerate(telegram.shown("4242"), 1):
        print(f"  {number}. {seen.text}")
    gap = telegram.shown("4242")[1].at - telegram.shown("4242")[0].at
    print(f"gap between the two messages, by Telegram's clock: {gap:.2f}s (preset: 1/s per chat)")
    ok = shown and len(telegram.shown("4242")) == 2 and forged.status_code == 401
    print("Result: " + ("each part once, duplicate ignored, forgery refused" if ok else "WRONG"))
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'relaybox.db'}"
    sys.exit(asyncio.run(main(url)))
