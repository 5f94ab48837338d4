"""Helpers for in-process outbox tests: a fast config and a worker run until a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import relaybox
from relaybox.config import Config, parse_config
from relaybox.models import Delivery
from relaybox.outbox import transitions as tr
from relaybox.transports.base import Transport


def fast_config(**channel: Any) -> Config:
    """A ``mem`` channel with millisecond backoff and a short lease, so tests run fast."""
    body = {
        "transport": "memory",
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "jitter": 0.0,
        "max_attempts": 4,
        **channel,
    }
    return parse_config(
        {
            "worker": {
                "lease_seconds": 1.0,
                "poll_interval_seconds": 0.01,
                "expire_interval_seconds": 0.05,
                "shutdown_grace_seconds": 2.0,
            },
            "channels": {"mem": body},
        }
    )


async def run_worker_until(
    rb: relaybox.Relaybox,
    transport: Transport,
    done: Callable[[], Any],
    *,
    timeout: float = 10.0,
    concurrency: int = 8,
) -> relaybox.Worker:
    """Run a worker with ``transport`` on channel ``mem`` until ``await done()`` is truthy."""
    worker = relaybox.Worker(
        rb.store, rb.config, transports={"mem": transport}, concurrency=concurrency
    )
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + timeout
    try:
        while True:
            result = done()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return worker
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached before the timeout")
            if task.done():
                task.result()
                raise AssertionError("worker stopped early")
            await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def status_is(rb: relaybox.Relaybox, delivery_id: int, *statuses: str) -> Callable[[], Any]:
    async def check() -> bool:
        return str((await rb.delivery(delivery_id)).status) in statuses

    return check


def acked_part(d: Delivery, index: int, *, last: bool, worker: str = "w") -> tr.SentPart:
    """Part ``index`` of claimed delivery ``d`` as the transport acknowledged it ("surfaced")."""
    attempt = tr.AttemptRecord(
        d.id, d.attempts, worker, time.time(), "surfaced", d.correlation_id,
        part_index=index, guid=d.parts[index - d.start_index].guid,
    )  # fmt: skip
    return tr.SentPart(tr.Lease(d.id, d.lease_epoch), index, "surfaced", f"m{index}", attempt, last)
