"""Task supervisor cost with 10,000 open tasks: deadline scan per tick, and worker CPU.

    .venv/bin/python -m benchmarks.tasks_supervisor [--tasks 10000] [--stores sqlite,postgres]

Seeds N open, acknowledged tasks (progress every hour, finish within a day: nothing falls due
on its own), vacuums/analyzes (the steady state, not autovacuum's backlog after a bulk load),
then measures:

* **scan**: the read-only part of a tick (acks to settle, results to settle, due deadlines)
  with nothing due, median and p99 of 300 runs: the cost every tick pays;
* **tick**: a whole supervisor tick (lease write + scans, one transaction, committed);
* **tick with 100 due**: 100 tasks past their progress deadline, each nudged in that tick
  (a message enqueued through the outbox, two journal events, the task updated);
* **worker CPU**: a real ``relaybox worker`` (default ``tick_seconds = 1``) supervising the N
  tasks for 20 s, CPU seconds per wall second; and the same worker on an empty store.

Results go to ``benchmarks/results/tasks_supervisor.json`` and docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    cpu_seconds,
    fresh_store,
    machine,
    percentile,
    start_worker,
    stop_worker,
    work_dir,
)
from relaybox.config import ChannelConfig, ContractDefaults
from relaybox.store import Store, Tx, open_store
from relaybox.tasks import transitions as tr
from relaybox.tasks.models import Contract

RESULTS = Path(__file__).parent / "results" / "tasks_supervisor.json"
CHANNELS = {"bench": ChannelConfig("bench", "noop", max_age_seconds=None)}
WINDOW_SECONDS = 20.0


def _seed(store: Store, count: int) -> None:
    contract = Contract(progress_every=3600, finish_within=86_400).resolve(ContractDefaults())
    now = time.time()
    futures = []
    for n in range(count):
        request = tr.StartRequest(
            task_key=f"bench-{n}", channel="bench", thread_id=f"chat-{n % 500}",
            recipient=f"user-{n}", resource_id=f"user-{n}", correlation_id=f"corr-{n}",
            summary=f"benchmark task {n}", contract=contract,
        )  # fmt: skip
        futures.append(store.submit(tr.start(request, now, CHANNELS)))
    for future in futures:
        future.result()

    def acked(tx: Tx) -> None:  # as if every acknowledgement had surfaced
        tx.execute_script(
            "UPDATE tasks SET state = 'acked', acked_at = created_at, ack_due = NULL,"
            " next_due = progress_due"
        )

    store.run_sync(acked)


def _settle_statistics(kind: str, url: str, store: Store) -> None:
    """Steady state: the bulk seeding's dead index entries vacuumed, statistics fresh.

    Without this, the first minutes after seeding measure autovacuum's backlog (10,000 dead
    entries in the partial indexes), not the supervisor.
    """
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE tasks")
            conn.execute("VACUUM ANALYZE deliveries")
        return

    def analyze(tx: Tx) -> None:
        tx.execute_script("ANALYZE")

    store.run_sync(analyze)


def _scan(tx: Tx) -> int:
    now = time.time()
    found = len(tx.fetch_all("tasks_ack_settled", {"limit": 500}))
    found += len(tx.fetch_all("tasks_result_settled", {"limit": 500}))
    return found + len(tx.fetch_all("tasks_due", {"now": now, "limit": 500}))


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 3),
        "p99": round(percentile(samples, 99), 3),
        "max": round(max(samples), 3),
        "runs": len(samples),
    }


def _timed(action: Any, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return _summary(samples)


def _make_due(store: Store, count: int) -> None:
    def unit(tx: Tx) -> None:
        tx.execute_script(
            "UPDATE tasks SET progress_due = 1, next_due = 1 WHERE id IN"
            f" (SELECT id FROM tasks WHERE state = 'acked' ORDER BY id LIMIT {count})"
        )

    store.run_sync(unit)


def _worker_cpu(url: str) -> float:
    config = work_dir() / "tasks-bench.toml"
    config.write_text('[channels.bench]\ntransport = "noop"\nmax_age_seconds = 0\n')
    proc = start_worker(url, config)
    try:
        time.sleep(3.0)  # started, migrated, first ticks done
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(WINDOW_SECONDS)
        return (cpu_seconds(proc.pid) - before) / (time.monotonic() - started)
    finally:
        stop_worker(proc)


def measure(kind: str, count: int) -> dict[str, Any]:
    with fresh_store(kind) as bench:
        idle_cpu = _worker_cpu(bench.url)
        store = open_store(bench.url)
        try:
            started = time.perf_counter()
            _seed(store, count)
            seed_seconds = time.perf_counter() - started
            _settle_statistics(kind, bench.url, store)
            assert store.read_sync(_scan) == 0
            scan = _timed(lambda: store.read_sync(_scan), 300)
            tick = _timed(
                lambda: store.run_sync(tr.tick("bench", time.time(), 5, 500, CHANNELS)), 300
            )
            store.run_sync(tr.release_supervision("bench"))
            # Before the nudges below: their deliveries would be the worker's work, not the tasks.
            busy_cpu = _worker_cpu(bench.url)
            due_samples = []
            for _ in range(5):
                _make_due(store, 100)
                begun = time.perf_counter()
                report = store.run_sync(tr.tick("bench", time.time(), 5, 500, CHANNELS))
                due_samples.append((time.perf_counter() - begun) * 1000)
                assert len(report.acted) == 100, report.acted[:3]
        finally:
            store.close()
    return {
        "store": kind,
        "open_tasks": count,
        "seed_seconds": round(seed_seconds, 2),
        "scan_ms": scan,
        "tick_ms": tick,
        "tick_with_100_due_ms": _summary(due_samples),
        "worker_cpu_percent_with_tasks": round(100 * busy_cpu, 2),
        "worker_cpu_percent_empty_store": round(100 * idle_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    rows = []
    for kind in args.stores.split(","):
        row = measure(kind, args.tasks)
        rows.append(row)
        print(json.dumps(row))
    RESULTS.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
