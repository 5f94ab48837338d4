"""What a turn costs, and how fast a redelivery is answered while another attempt holds it.

    .venv/bin/python -m benchmarks.turns [--turns 300] [--stores sqlite,postgres]

Measures, one asyncio caller at a time (the latency an agent sees, not throughput):

* **turn**: ``async with rb.turn(...)`` (record + claim) then ``turn.reply(...)`` with one
  history entry (history + reply + "answered" in one transaction): median and p99 per message,
  next to the same message handled without turns (``record_inbound`` + ``rb.reply``);
* **in progress**: a redelivery of a message whose turn another attempt holds (the crashed or
  running case): how long ``rb.turn`` takes to answer ``in_progress``.

Results go to ``benchmarks/results/turns.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import relaybox
from benchmarks.common import fresh_store, percentile
from relaybox.config import parse_config

RESULTS = Path(__file__).parent / "results" / "turns.json"
CONFIG = parse_config({"channels": {"bench": {"transport": "noop"}}})


def _summary(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {"median_ms": round(statistics.median(ms), 3), "p99_ms": round(percentile(ms, 99), 3)}


async def _measure(url: str, count: int) -> dict[str, Any]:
    rb = relaybox.open(url, config=CONFIG)
    try:
        plain: list[float] = []
        for n in range(count):
            started = time.perf_counter()
            got = await rb.record_inbound(
                channel="bench", external_id=f"p{n}", thread_id=f"c{n % 50}", resource_id="u"
            )
            await rb.reply(got.inbound.id, ["ok"])
            plain.append(time.perf_counter() - started)
        turns: list[float] = []
        for n in range(count):
            started = time.perf_counter()
            async with rb.turn(
                channel="bench", external_id=f"t{n}", thread_id=f"c{n % 50}", resource_id="u"
            ) as turn:
                await turn.reply(["ok"], history=[("assistant", "ok")])
            turns.append(time.perf_counter() - started)
        held = rb.turn(channel="bench", external_id="held", thread_id="c", resource_id="u")
        await held.__aenter__()  # this attempt holds the turn for the whole measurement
        busy: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            async with rb.turn(
                channel="bench", external_id="held", thread_id="c", resource_id="u"
            ) as again:
                assert str(again.outcome) == "in_progress"
            busy.append(time.perf_counter() - started)
        await held.__aexit__(None, None, None)
        return {
            "record_inbound_and_reply": _summary(plain),
            "turn_with_reply_and_history": _summary(turns),
            "redelivery_answered_in_progress": _summary(busy),
        }
    finally:
        rb.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    results: dict[str, Any] = {"turns": args.turns}
    for kind in args.stores.split(","):
        with fresh_store(kind) as store:
            results[kind] = asyncio.run(_measure(store.url, args.turns))
        print(kind, json.dumps(results[kind]))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
