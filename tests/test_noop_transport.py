"""The ``noop`` transport: a configured discard channel delivers every part, on both stores."""

from __future__ import annotations

import asyncio

import pytest

import relaybox
from relaybox.config import parse_config
from relaybox.errors import ConfigError
from relaybox.models import Outcome, Status


async def test_noop_channel_delivers_every_part_as_surfaced(store_url: str):
    config = parse_config({"channels": {"mute": {"transport": "noop"}}})
    rb = relaybox.open(store_url, config=config)
    try:
        d = (
            await rb.enqueue(channel="mute", thread_id="t", recipient="r", parts=["a", "b", "c"])
        ).delivery
        worker = relaybox.Worker(rb.store, config)  # transports built from the config
        task = asyncio.create_task(worker.run())
        for _ in range(500):
            done = await rb.delivery(d.id)
            if done.status is Status.DELIVERED:
                break
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(task, 10)
        assert done.status is Status.DELIVERED and done.start_index == 3
        assert [p.outcome for p in done.parts] == [str(Outcome.SURFACED)] * 3
        assert [a.part_index for a in await rb.attempts(d.id)] == [0, 1, 2]
    finally:
        rb.close()


def test_noop_takes_no_url():
    with pytest.raises(ConfigError, match=r"unknown key channels\.mute\.url"):
        parse_config({"channels": {"mute": {"transport": "noop", "url": "http://x"}}})
