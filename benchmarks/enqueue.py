"""relaybox's enqueue rate, the number to set beside the peers' enqueue rates.

An agent server enqueues one reply per conversation turn, from many conversations at once: 64
concurrent ``Relaybox.enqueue`` calls, each a 4-part reply acknowledged only once committed
(SQLite synchronous=FULL, PostgreSQL synchronous_commit=on). Concurrent calls share commits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.common import fresh_store, summary
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


def measure(kind: str, runs: int = 3) -> dict[str, Any]:
    config = parse_config({"channels": {"bench": {"transport": "noop", "max_age_seconds": 0}}})
    rates = []
    with fresh_store(kind) as bench:
        rb = Relaybox(open_store(bench.url), config)
        try:
            for run in range(runs):
                rates.append(asyncio.run(_enqueue_all(rb, f"enq{run}")))
        finally:
            rb.close()
    return {
        "store": kind,
        "concurrent_callers": CALLERS,
        "parts_per_reply": len(PARTS),
        "replies_per_second": summary(rates, 0),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite", runs=1), indent=2))
