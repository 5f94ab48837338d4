"""Measurement 4: enqueue to first part surfaced, p50 and p99, at low load.

A real worker process with default settings waits on an idle store; the suite enqueues one
4-part reply every 20 ms and takes, for each, the time from just before ``enqueue`` to the
moment the no-op transport surfaced part 1 (its attempt row: start of the send plus its
latency).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import (
    fresh_store,
    percentile,
    start_worker,
    stop_worker,
    wait_until,
    work_dir,
    write_config,
)
from benchmarks.seed import requests
from benchmarks.throughput import any_active
from relaybox.outbox.enqueue import EnqueueUnit
from relaybox.store import open_store

SAMPLES = 250
GAP_SECONDS = 0.02


def _first_part_surfaced(store: Any, ids: list[int]) -> dict[int, float]:
    def unit(tx: Any) -> dict[int, float]:
        rows = tx._conn.execute(
            "SELECT delivery_id, started_at, latency_ms FROM delivery_attempts"
            " WHERE part_index = 0 AND outcome = 'surfaced'"
        ).fetchall()
        return {
            int(r["delivery_id"]): float(r["started_at"]) + float(r["latency_ms"] or 0) / 1000
            for r in rows
        }

    return store.read_sync(unit)


def measure(kind: str, samples: int = SAMPLES) -> dict[str, Any]:
    with fresh_store(kind) as bench:
        store = open_store(bench.url)
        config = write_config(work_dir())  # default [worker] settings
        worker = start_worker(bench.url, config)
        try:
            time.sleep(1.5)  # imported, connected, idle
            reqs = requests(samples + 5, samples + 5, tag="lat")
            for warm in reqs[:5]:
                store.run_sync(EnqueueUnit(warm))
            wait_until(lambda: not any_active(store), timeout=30, interval=0.02)
            sent_at: dict[int, float] = {}
            for req in reqs[5:]:
                started = time.time()
                result = store.run_sync(EnqueueUnit(req))
                sent_at[result.delivery.id] = started
                time.sleep(GAP_SECONDS)
            wait_until(lambda: not any_active(store), timeout=60, interval=0.05)
            surfaced = _first_part_surfaced(store, list(sent_at))
        finally:
            stop_worker(worker)
            store.close()
            config.unlink(missing_ok=True)
    latencies = [(surfaced[i] - t) * 1000 for i, t in sent_at.items()]
    return {
        "store": kind,
        "samples": len(latencies),
        "gap_ms": GAP_SECONDS * 1000,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite"), indent=2))
