"""A delivered reply's successor is claimed at once, by id, without a scan for heads.

The worker's poll is set to a minute here, so every claim after the first has to come from
news: the ack batch naming the thread's next head, or a run that ended other than delivered
(which asks for a scan). A spy on the worker's claim unit records which kind each claim was.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import relaybox
from _outbox_helpers import status_is
from relaybox.config import parse_config
from relaybox.outbox import transitions as tr
from relaybox.transports.base import OutgoingPart, PermanentError, SendResult
from relaybox.transports.memory import MemoryTransport
from relaybox.worker import worker as worker_module


def _slow_poll_config() -> Any:
    return parse_config(
        {
            "worker": {"lease_seconds": 5.0, "poll_interval_seconds": 60.0},
            "channels": {"mem": {"transport": "memory", "max_attempts": 1}},
        }
    )


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each claim the worker makes: 'scan' or 'among <n>'."""
    seen: list[str] = []
    real = tr.claim

    def spy(*args: Any, **kwargs: Any) -> Any:
        among = args[4] if len(args) > 4 else kwargs.get("among")
        seen.append("scan" if among is None else f"among {len(among)}")
        return real(*args, **kwargs)

    monkeypatch.setattr(worker_module.tr, "claim", spy)
    return seen


async def _run_until(rb: relaybox.Relaybox, transport: Any, done: Any) -> float:
    worker = relaybox.Worker(rb.store, rb.config, transports={"mem": transport}, concurrency=4)
    task = asyncio.create_task(worker.run())
    started = time.monotonic()
    try:
        while not await done():
            assert time.monotonic() - started < 20, "the successor was not claimed in time"
            await asyncio.sleep(0.02)
        return time.monotonic() - started
    finally:
        worker.stop()
        await task


async def test_the_next_reply_of_a_thread_is_claimed_by_id_when_the_one_before_is_delivered(
    store_url: str, claims: list[str]
) -> None:
    rb = relaybox.open(store_url, config=_slow_poll_config())
    try:
        ids = []
        for n in range(3):
            d = await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=[f"m{n}"])
            ids.append(d.delivery.id)
        transport = MemoryTransport()
        took = await _run_until(rb, transport, status_is(rb, ids[-1], "delivered"))
        assert took < 10  # far inside the minute-long poll
        assert [p.text for p in transport.wire] == ["m0", "m1", "m2"]
        # The first claims scan (at start, and when LISTEN connects); each successor after
        # that is claimed by id. (On SQLite the file watcher wakes the worker on every
        # commit, and each wake-up asks for a scan.)
        assert claims[0] == "scan"
        if store_url.startswith("postgresql"):
            assert claims[-2:] == ["among 1", "among 1"]
            assert claims.count("scan") <= 2
    finally:
        rb.close()


async def test_a_thread_whose_reply_failed_goes_on_without_waiting_for_the_poll(
    store_url: str, claims: list[str]
) -> None:
    rb = relaybox.open(store_url, config=_slow_poll_config())
    try:
        first = await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["bad"])
        second = await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["good"])

        class RejectsBad(MemoryTransport):
            async def send(self, part: OutgoingPart) -> SendResult:
                if part.text == "bad":
                    raise PermanentError("400 bad request")
                return await super().send(part)

        took = await _run_until(rb, RejectsBad(), status_is(rb, second.delivery.id, "delivered"))
        assert took < 10
        assert str((await rb.delivery(first.delivery.id)).status) == "failed"
        # No ack named the successor (the first reply failed): a scan found it.
        assert claims.count("scan") >= 2
    finally:
        rb.close()
