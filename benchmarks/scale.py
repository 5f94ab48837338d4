"""Claims and throughput on a deep backlog: 1,000,000 queued replies over 100,000 threads.

A claim must cost the same whatever the backlog: it reads thread heads in claim order from the
ready index and stops at its limit (no sort of every head). This step checks that on both
stores, against a small backlog (4,000 replies over 400 threads), in the same run:

* claim latency: ``claim`` units of 128 (what a worker asks for under load), each followed by
  the acknowledgement of every claimed delivery (so the next claim finds fresh heads, as in a
  drain); median and max in ms;
* parts/s: one ``relaybox worker`` process drains for a fixed window; delivered parts counted
  from the attempt rows.

Replies are 1-part here (a claim per part, the claim's worst case), seeded by set-based SQL
(benchmark-only; relaybox's enqueue is measured elsewhere). Runtime stays bounded: nothing
waits for a million replies to drain.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.common import fresh_store, start_worker, stop_worker, work_dir, write_config
from relaybox.outbox import transitions as tr
from relaybox.store import Store, open_store

DEEP = (1_000_000, 100_000)  # replies, threads
SHALLOW = (4_000, 400)  # 400 heads at a time: enough for claims of 128
DRAIN_SHALLOW = (60_000, 6_000)  # enough for the drain window at ~10k parts/s
CLAIMS = 25
CLAIM_LIMIT = 128
WARMUP_SECONDS = 2.0
WINDOW_SECONDS = 5.0

_PG_SEED = """
SET LOCAL session_replication_role = replica;  -- bulk load: skip per-row key checks
INSERT INTO deliveries (reply_key, content_hash, channel, thread_id, recipient, resource_id,
    correlation_id, status, part_count, max_attempts, created_at, updated_at, available_at)
SELECT 'k' || i, 'h', 'bench', 't' || (i % {threads}), 'r' || (i % {threads}),
    'r' || (i % {threads}), 'c' || i, 'queued', 1, 5, {now} + i * 1e-6, {now},
    {now} + i * 1e-6
FROM generate_series(1, {replies}) AS i;
INSERT INTO delivery_parts (delivery_id, part_index, guid, body)
SELECT id, 0, 'g' || id, 'Your flight leaves at 09:40.' FROM deliveries;
"""

_SQLITE_SEED = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {replies})
INSERT INTO deliveries (reply_key, content_hash, channel, thread_id, recipient, resource_id,
    correlation_id, status, part_count, max_attempts, created_at, updated_at, available_at)
SELECT 'k' || i, 'h', 'bench', 't' || (i % {threads}), 'r' || (i % {threads}),
    'r' || (i % {threads}), 'c' || i, 'queued', 1, 5, {now} + i * 1e-6, {now},
    {now} + i * 1e-6
FROM n;
INSERT INTO delivery_parts (delivery_id, part_index, guid, body)
SELECT id, 0, 'g' || id, 'Your flight leaves at 09:40.' FROM deliveries;
"""


def _seed(store: Store, replies: int, threads: int) -> float:
    started = time.monotonic()
    template = _PG_SEED if store.dialect == "postgres" else _SQLITE_SEED
    sql = template.format(replies=replies, threads=threads, now=time.time() - 1)

    def unit(tx: Any) -> None:
        tx.execute_script(sql)

    store.run_sync(unit)

    def analyze(tx: Any) -> None:
        tx.execute_script("ANALYZE")

    store.run_sync(analyze)
    return time.monotonic() - started


def _claim_latency(store: Store) -> list[float]:
    """ms per claim of up to 128 heads; each claim's deliveries are then acknowledged."""
    samples = []
    for _ in range(CLAIMS):
        started = time.perf_counter()
        claimed = store.run_sync(tr.claim("scale-bench", ["bench"], CLAIM_LIMIT, 60.0))
        samples.append((time.perf_counter() - started) * 1000)
        if len(claimed) != CLAIM_LIMIT:
            raise RuntimeError(f"a claim found {len(claimed)} heads, expected {CLAIM_LIMIT}")
        now = time.time()
        sent = [
            tr.SentPart(
                tr.Lease(d.id, d.lease_epoch),
                0,
                "surfaced",
                None,
                tr.AttemptRecord(
                    d.id,
                    d.attempts,
                    "scale-bench",
                    now,
                    "surfaced",
                    d.correlation_id,
                    0,
                    d.parts[0].guid,
                    0.0,
                ),
            )
            for d in claimed
        ]
        store.run_sync(tr.record_sent_many(sent))
    return samples


def _attempt_rows(store: Store) -> int:
    def unit(tx: Any) -> int:
        row = tx._conn.execute("SELECT coalesce(max(id), 0) AS n FROM delivery_attempts").fetchone()
        return int(row["n"] if isinstance(row, dict) else row[0])

    return int(store.read_sync(unit))


def _drain_rate(url: str, store: Store, settings: dict[str, Any]) -> float:
    """Parts/s of one worker process over a fixed window, after a warm-up."""
    config = write_config(work_dir(), **settings)
    worker = start_worker(url, config)
    try:
        time.sleep(WARMUP_SECONDS)
        before, started = _attempt_rows(store), time.monotonic()
        time.sleep(WINDOW_SECONDS)
        after, ended = _attempt_rows(store), time.monotonic()
    finally:
        stop_worker(worker)
        config.unlink(missing_ok=True)
    return (after - before) / (ended - started)


def _one(kind: str, replies: int, threads: int, *, drain: bool, settings: dict[str, Any]) -> dict:  # type: ignore[type-arg]
    with fresh_store(kind) as bench:
        store = open_store(bench.url)
        try:
            seed_seconds = _seed(store, replies, threads)
            claims = _claim_latency(store)
            rate = _drain_rate(bench.url, store, settings) if drain else None
        finally:
            store.close()
    return {
        "replies": replies,
        "threads": threads,
        "seed_seconds": round(seed_seconds, 1),
        "claim_ms_median": round(statistics.median(claims), 2),
        "claim_ms_max": round(max(claims), 2),
        "parts_per_second": None if rate is None else round(rate),
    }


def measure(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    deep = _one(kind, *DEEP, drain=True, settings=settings)
    shallow = _one(kind, *SHALLOW, drain=False, settings=settings)
    drain_shallow = _one(kind, *DRAIN_SHALLOW, drain=True, settings=settings)
    return {
        "store": kind,
        "claim_limit": CLAIM_LIMIT,
        "claims": CLAIMS,
        "window_seconds": WINDOW_SECONDS,
        "deep": deep,
        "shallow": shallow,
        "drain_shallow": drain_shallow,
        "claim_ratio_deep_to_shallow": round(
            deep["claim_ms_median"] / shallow["claim_ms_median"], 2
        ),
        "parts_ratio_deep_to_shallow": round(
            deep["parts_per_second"] / drain_shallow["parts_per_second"], 2
        ),
    }


if __name__ == "__main__":
    import json
    import sys

    print(
        json.dumps(
            measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite",
                    {"concurrency": 256, "claim_batch": 128}),
            indent=2,
        )
    )  # fmt: skip
