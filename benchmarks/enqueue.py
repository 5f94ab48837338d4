"""relaybox's enqueue rate, the number to set beside the peers' enqueue rates.

An agent server enqueues one reply per conversation turn, from many conversations at once: 64
concurrent ``Relaybox.enqueue`` calls, each a 4-part reply acknowledged only once committed
(SQLite synchronous=FULL, PostgreSQL synchronous_commit=on). Concurrent calls share commits.

Bulk: one caller, ``Relaybox.enqueue_many`` with batches of 10 and of 100 replies (pgqueuer's
producer enqueues batches of 10 in its benchmark), each batch one transaction.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from benchmarks.common import CpuMeter, backend_pids, fresh_store, summary
from benchmarks.seed import PARTS
from relaybox.client import Relaybox
from relaybox.config import parse_config
from relaybox.store import open_store

CALLERS = 64
REPLIES = 8000


async def _enqueue_all(rb: Relaybox, tag: str) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(REPLIES):
        queue.put_nowait(n)

    async def caller() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            await rb.enqueue(
                channel="bench",
                thread_id=f"{tag}-{n % 4000}",
                recipient="+15550100",
                parts=list(PARTS),
                reply_key=f"{tag}-{n}",
            )

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return REPLIES / (time.perf_counter() - started)


async def _enqueue_bulk(rb: Relaybox, tag: str, batch: int) -> float:
    replies = [
        {
            "channel": "bench",
            "thread_id": f"{tag}-{n % 4000}",
            "recipient": "+15550100",
            "parts": list(PARTS),
            "reply_key": f"{tag}-{n}",
        }
        for n in range(REPLIES)
    ]
    started = time.perf_counter()
    for start in range(0, REPLIES, batch):
        await rb.enqueue_many(replies[start : start + batch])
    return REPLIES / (time.perf_counter() - started)


BULK_BATCHES = (10, 100)


def measure(kind: str, runs: int = 3) -> dict[str, Any]:
    config = parse_config({"channels": {"bench": {"transport": "noop", "max_age_seconds": 0}}})
    rates = []
    bulk: dict[int, list[float]] = {size: [] for size in BULK_BATCHES}
    # CPU µs per reply: this process (callers and the store's writer thread) + its backend.
    cpu: dict[str, list[float]] = {"single": [], **{str(size): [] for size in BULK_BATCHES}}
    with fresh_store(kind) as bench:
        rb = Relaybox(open_store(bench.url), config)
        mine = [os.getpid()]
        groups = {"process": lambda: mine}
        if kind == "postgres":
            groups["postgres"] = lambda: backend_pids(mine)
        meter = CpuMeter(groups)

        def metered(mode: str, run: Any) -> float:
            meter.start()
            rate = float(run())
            cpu[mode].append(sum(meter.stop().values()) * 1e6 / REPLIES)
            return rate

        try:
            for run in range(runs):
                rates.append(metered("single", lambda: asyncio.run(_enqueue_all(rb, f"e{run}"))))  # noqa: B023
                for size in BULK_BATCHES:
                    tag = f"bulk{size}-{run}"
                    bulk[size].append(
                        metered(str(size), lambda: asyncio.run(_enqueue_bulk(rb, tag, size)))  # noqa: B023
                    )
        finally:
            rb.close()
    return {
        "store": kind,
        "concurrent_callers": CALLERS,
        "parts_per_reply": len(PARTS),
        "replies_per_second": summary(rates, 0),
        "bulk_replies_per_second": {str(size): summary(bulk[size], 0) for size in BULK_BATCHES},
        "cpu_us_per_reply": {mode: summary(samples, 1) for mode, samples in cpu.items()},
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite", runs=1), indent=2))
