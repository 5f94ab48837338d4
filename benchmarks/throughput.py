"""Delivered parts per second through the no-op transport, with real worker processes.

Workers start first and idle; then a batch of 4-part replies over thousands of threads is
committed in one transaction, and the clock runs from that commit until no reply is active.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.common import (
    CpuMeter,
    backend_pids,
    fresh_store,
    start_worker,
    stop_worker,
    summary,
    wait_until,
    work_dir,
    write_config,
)
from benchmarks.seed import enqueue_bulk, requests
from relaybox.store import open_store


def any_active(store: Any) -> bool:
    """Is any reply still queued or being sent? (An index probe, not a count.)"""

    def unit(tx: Any) -> bool:
        conn = tx._conn  # benchmark-only: a plain query on the store's own connection
        row = conn.execute(
            "SELECT 1 AS one FROM deliveries WHERE status IN ('queued', 'sending') LIMIT 1"
        ).fetchone()
        return row is not None

    return bool(store.read_sync(unit))


def _read_one(store: Any, sql: str, *params: Any) -> dict[str, Any] | None:
    """One row of a plain query (``?`` placeholders) on a read connection (benchmark-only)."""

    def unit(tx: Any) -> dict[str, Any] | None:
        mark = "?" if tx.dialect == "sqlite" else "%s"  # sqlite3's and psycopg's placeholder
        row = tx._conn.execute(sql.replace("?", mark), params).fetchone()
        return None if row is None else dict(row)

    result: dict[str, Any] | None = store.read_sync(unit)
    return result


def next_id(store: Any) -> int:
    """The id the next enqueued reply gets, at least (deliveries before it are not this run's)."""
    row = _read_one(store, "SELECT coalesce(max(id), 0) + 1 AS n FROM deliveries")
    assert row is not None
    return int(row["n"])


def run_active(store: Any, first_id: int) -> bool:
    """Is any reply of this run (ids from ``first_id``) still queued or being sent?

    Walks the run's replies in id order and stops at the first active one, so the poll costs
    little while most are still active; unlike ``any_active`` it never reads the earlier runs'
    rows (or their dead versions: autovacuum is off on the CI server), which made each poll
    cost milliseconds of server CPU by the third run, beside the workers it measures.
    """
    sql = (
        "SELECT 1 AS one FROM deliveries WHERE id >= ? AND status IN ('queued', 'sending')"
        " ORDER BY id LIMIT 1"
    )
    return _read_one(store, sql, first_id) is not None


def last_finished(store: Any, first_id: int) -> float:
    """When the run's last reply was delivered (epoch seconds, as the worker recorded it)."""
    row = _read_one(store, "SELECT max(finished_at) AS at FROM deliveries WHERE id >= ?", first_id)
    assert row is not None
    return float(row["at"])


def pg_counters(store: Any) -> dict[str, float]:
    """WAL volume, commits and HOT updates so far (PostgreSQL's own statistics views)."""

    def unit(tx: Any) -> dict[str, float]:
        conn = tx._conn
        wal = conn.execute("SELECT wal_bytes, wal_fpi, wal_records FROM pg_stat_wal").fetchone()
        db = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        tables = conn.execute(
            "SELECT coalesce(sum(n_tup_upd), 0) AS upd, coalesce(sum(n_tup_hot_upd), 0) AS hot"
            " FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        ).fetchone()
        return {
            "wal_bytes": float(wal["wal_bytes"]),
            "wal_full_page_images": float(wal["wal_fpi"]),
            "wal_records": float(wal["wal_records"]),
            "commits": float(db["xact_commit"]),
            "row_updates": float(tables["upd"]),
            "hot_updates": float(tables["hot"]),
        }

    return store.read_sync(unit)


def analyze(store: Any) -> None:
    """Refresh planner statistics after bulk seeding, as autovacuum does on a live server.

    Only ``deliveries``: the claim's and the ack batch's plans read its statistics (the parts
    are read by primary key, the attempts only appended). A bare ``ANALYZE`` also sampled every
    other table of the database, other schemas on a shared server included: about 0.5 s of a
    backend's CPU inside each 1.3 s run, a cost that depended on what else the database held.
    """

    def unit(tx: Any) -> None:
        tx.execute_script("ANALYZE deliveries")

    store.run_sync(unit, write=True)


def measure(
    kind: str,
    processes: int,
    *,
    deliveries: int = 8000,
    threads: int = 4000,
    runs: int = 3,
    worker_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = {"concurrency": 256, "claim_batch": 128, **(worker_settings or {})}
    rates: list[float] = []
    per_part: list[float] = []  # CPU µs per delivered part: workers + their PostgreSQL backends
    wall = 0.0
    with fresh_store(kind) as bench:
        store = open_store(bench.url)
        config = write_config(work_dir(), **settings)
        workers = [start_worker(bench.url, config) for _ in range(processes)]
        try:
            # Warm up: every worker imported, connected and claiming.
            time.sleep(1.5)
            enqueue_bulk(store, requests(processes * 50, processes * 50, tag="warm"))
            wait_until(lambda: not any_active(store), timeout=60, interval=0.05)
            worker_pids = [w.pid for w in workers]
            groups = {"workers": lambda: worker_pids, "bench": lambda: [os.getpid()]}
            if kind == "postgres":
                # The server processes serving the workers (not other clients of the server).
                groups["postgres"] = lambda: backend_pids(worker_pids)
            meter = CpuMeter(groups)
            wal_before = pg_counters(store) if kind == "postgres" else None
            for run in range(runs):
                batch = requests(deliveries, threads, tag=f"run{run}")
                first_id = next_id(store)
                enqueue_bulk(store, batch, chunk=deliveries)
                meter.start()
                started = time.time()
                if kind == "postgres":
                    analyze(store)  # inside the timed window: it is not free
                wait_until(lambda f=first_id: not run_active(store, f), timeout=300, interval=0.02)
                used = meter.stop()
                # The clock stops at the last delivery the workers recorded, not at the poll
                # that noticed it (up to one poll interval later).
                done = last_finished(store, first_id)
                rates.append(deliveries * 4 / (done - started))
                per_part.append(
                    (used["workers"] + used.get("postgres", 0.0)) * 1e6 / (deliveries * 4)
                )
                wall += done - started
            pg_stats = None
            if wal_before is not None:
                after = pg_counters(store)
                parts = deliveries * 4 * runs
                pg_stats = {k: round((after[k] - wal_before[k]) / parts, 2) for k in after}
        finally:
            for proc in workers:
                stop_worker(proc)
            store.close()
            config.unlink(missing_ok=True)
    return {
        "store": kind,
        "worker_processes": processes,
        "deliveries_per_run": deliveries,
        "parts_per_delivery": 4,
        "threads": threads,
        "settings": settings,
        "parts_per_second": summary(rates, 0),
        # CPU seconds per 1,000 delivered parts, by process group (2 cores = 2 s per second)
        "cpu_ms_per_part": {
            g: round(used * 1000 / (deliveries * 4 * runs), 3) for g, used in meter.used.items()
        },
        "cpu_us_per_part": summary(per_part, 1),
        "cpu_us_per_part_by_group": [
            {g: round(used * 1e6 / (deliveries * 4), 1) for g, used in run.items()}
            for run in meter.runs
        ],
        "cores_busy": round(sum(meter.used.values()) / wall, 2),
        "postgres_per_part": pg_stats,
    }


if __name__ == "__main__":
    import json
    import sys

    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    print(json.dumps(measure(kind, procs), indent=2))
