"""Measurement 7: the operator console's queries on 1,000,000 deliveries, 5,000,000 attempts
and 1,000,000 failures (issue 12: overview and list queries <= 50 ms).

Like ``operator_queries.py``, the seeded store is cached (SQLite
``benchmarks/.cache/console-v1.db``; PostgreSQL schema ``rb_bench_console_v1``) and built
once, by SQL, with relaybox's own schema (all migrations): 1,000,000 deliveries over 30 days
on two channels (70% ``sms``, 30% ``chat``; delivered mostly, with failed, expired,
cancelled and parked ones, and 2,000 still queued), one part each, five attempt rows each
(5,000,000; the last surfaces the part) and 1,000,000 failures. "Now" is the newest seeded
time, so a cache of any age asks the same questions. Each question is asked through the
console's own read units (what its pages and API run), on the store's read path, 15 times.

    python -m benchmarks.console_queries [sqlite|postgres]
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from typing import Any

import psycopg

from benchmarks.common import CACHE_DIR, PG_URL
from relaybox.audit.query import FailureFilter, group_failures, list_failures
from relaybox.console.filters import DeliveryFilter
from relaybox.console.live import change_marks
from relaybox.console.queries import (
    ChartCache,
    charts,
    count_matching,
    deliveries_page,
    overview,
)
from relaybox.models import Status
from relaybox.store import open_store

SEED_VERSION = 1
DELIVERIES = 1_000_000
ATTEMPTS_PER_DELIVERY = 5
FAILURES = 1_000_000
CHATS = 100_000
QUEUED = 2_000  # the newest deliveries are still waiting
SPAN = 30 * 86400.0
SQLITE_PATH = CACHE_DIR / f"console-v{SEED_VERSION}.db"
PG_SCHEMA = f"rb_bench_console_v{SEED_VERSION}"
REPEAT = 15

# status by i % 1000: 10 failed, 2 expired, 5 cancelled, 1 unknown, the rest delivered; the
# newest QUEUED are queued. :end is the newest time; delivery i was created at
# end - (DELIVERIES - i) * step and finished 2 s later.
_STATUS = f"""CASE WHEN i > {DELIVERIES - QUEUED} THEN 'queued'
            WHEN i % 1000 < 10 THEN 'failed' WHEN i % 1000 < 12 THEN 'expired'
            WHEN i % 1000 < 17 THEN 'cancelled' WHEN i % 1000 = 17 THEN 'unknown'
            ELSE 'delivered' END"""
_STEP = SPAN / DELIVERIES


def _seed_sql(dialect: str) -> str:
    """The seeding script, written once: only the row generator and the parameter style differ."""

    def rows(first: int, last: int) -> tuple[str, str]:
        # (prefix before INSERT, FROM clause): a recursive CTE on SQLite, generate_series on PG
        if dialect == "sqlite":
            return (
                f"WITH RECURSIVE seq(i) AS (SELECT {first} UNION ALL"
                f" SELECT i + 1 FROM seq WHERE i < {last})\n",
                "seq",
            )
        return "", f"generate_series({first}, {last}) AS i"

    d_pre, d_from = rows(1, DELIVERIES)
    a_pre, a_from = rows(0, DELIVERIES * ATTEMPTS_PER_DELIVERY - 1)
    f_pre, f_from = rows(1, FAILURES)
    job_id = f"CAST(i % {DELIVERIES} + 1 AS TEXT)"
    terminal = "i % 5 = 0"
    # PostgreSQL's ids are GENERATED ALWAYS: the seed sets them (attempts refer to them).
    override = "\nOVERRIDING SYSTEM VALUE" if dialect == "postgres" else ""
    script = f"""
{d_pre}INSERT INTO deliveries (id, reply_key, content_hash, channel, thread_id, recipient,
    resource_id, correlation_id, status, part_count, start_index, attempts, max_attempts,
    created_at, updated_at, available_at, finished_at, last_error){override}
SELECT i, 'rk-' || i, 'h', CASE WHEN i % 10 < 7 THEN 'sms' ELSE 'chat' END,
       'chat-' || (i % {CHATS}), 'user-' || (i % {CHATS}), 'user-' || (i % {CHATS}),
       'corr-' || i, {_STATUS}, 1,
       CASE WHEN {_STATUS} = 'delivered' THEN 1 ELSE 0 END, 5, 8,
       :end - ({DELIVERIES} - i) * {_STEP}, :end - ({DELIVERIES} - i) * {_STEP} + 2,
       :end - ({DELIVERIES} - i) * {_STEP},
       CASE WHEN i > {DELIVERIES - QUEUED} THEN NULL
            ELSE :end - ({DELIVERIES} - i) * {_STEP} + 2 END,
       CASE WHEN {_STATUS} IN ('failed', 'unknown') THEN 'HTTP 503 from the gateway' END
FROM {d_from};

INSERT INTO delivery_parts (delivery_id, part_index, guid, body)
SELECT id, 0, 'guid-' || id, 'reply' FROM deliveries;

{a_pre}INSERT INTO delivery_attempts (delivery_id, attempt, part_index, guid, worker_id,
    started_at, latency_ms, outcome, error, correlation_id)
SELECT i / {ATTEMPTS_PER_DELIVERY} + 1, i % {ATTEMPTS_PER_DELIVERY} + 1, 0,
       'guid-' || (i / {ATTEMPTS_PER_DELIVERY} + 1), 'bench-worker',
       :end - ({DELIVERIES * ATTEMPTS_PER_DELIVERY} - i) * {_STEP / ATTEMPTS_PER_DELIVERY},
       12.5,
       CASE WHEN i % {ATTEMPTS_PER_DELIVERY} = {ATTEMPTS_PER_DELIVERY - 1}
            THEN 'surfaced' ELSE 'transient' END,
       CASE WHEN i % {ATTEMPTS_PER_DELIVERY} = {ATTEMPTS_PER_DELIVERY - 1}
            THEN NULL ELSE 'HTTP 503 from the gateway' END,
       'corr-' || (i / {ATTEMPTS_PER_DELIVERY} + 1)
FROM {a_from};

{f_pre}INSERT INTO job_failures (queue, job_id, stage, channel, thread_id, resource_id,
    correlation_id, error_type, message, attempt, terminal, worker_id, created_at)
SELECT 'deliveries', {job_id}, 'send',
       CASE WHEN i % 10 < 7 THEN 'sms' ELSE 'chat' END, 'chat-' || (i % {CHATS}),
       'user-' || (i % {CHATS}), 'corr-' || (i % {DELIVERIES} + 1),
       CASE i % 4 WHEN 0 THEN 'TransientError' WHEN 1 THEN 'RateLimited'
                  WHEN 2 THEN 'AmbiguousSend' ELSE 'PermanentError' END,
       'HTTP 503 from the gateway', i % 8 + 1, {terminal}, 'bench-worker',
       :end - ({FAILURES} - i) * {SPAN / FAILURES}
FROM {f_from};
"""
    if dialect == "postgres":
        script = script.replace("%", "%%").replace(":end", "%(end)s")
    return script


def _sqlite_url() -> str:
    return f"sqlite:///{SQLITE_PATH}"


def _pg_url() -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{PG_SCHEMA}"


def seeded_end(kind: str) -> float | None:
    """The newest seeded time if the cached store is complete, else None."""
    try:
        if kind == "sqlite":
            if not SQLITE_PATH.exists():
                return None
            with sqlite3.connect(SQLITE_PATH) as conn:
                row = conn.execute("SELECT seeded_end FROM bench_seed").fetchone()
        else:
            with psycopg.connect(_pg_url()) as conn:
                row = conn.execute(f"SELECT seeded_end FROM {PG_SCHEMA}.bench_seed").fetchone()
    except (sqlite3.Error, psycopg.Error):
        return None
    return float(row[0]) if row else None


def seed(kind: str) -> float:
    """Build the cached store if missing; return its newest seeded time."""
    end = seeded_end(kind)
    if end is not None:
        return end
    end = time.time()
    started = time.monotonic()
    print(f"  seeding the {kind} console store (once, cached) ...", flush=True)
    if kind == "sqlite":
        CACHE_DIR.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            SQLITE_PATH.with_name(SQLITE_PATH.name + suffix).unlink(missing_ok=True)
        open_store(_sqlite_url()).close()  # relaybox's schema, all migrations
        conn = sqlite3.connect(SQLITE_PATH, isolation_level=None)
        conn.execute("PRAGMA synchronous=OFF")  # a cache: rebuilt if a seeding is cut short
        conn.execute("BEGIN")
        for statement in _seed_sql("sqlite").split(";\n"):
            if statement.strip():
                conn.execute(statement, {"end": end})
        conn.execute("CREATE TABLE bench_seed (seeded_end REAL NOT NULL)")
        conn.execute("INSERT INTO bench_seed VALUES (?)", (end,))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
    else:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
        open_store(_pg_url()).close()
        with psycopg.connect(_pg_url(), autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")  # a cache, rebuilt if cut short
            # No foreign-key checks while seeding (each one locks the referenced row: minutes
            # for 1M parts); the seed's rows are consistent by construction.
            conn.execute("SET session_replication_role = replica")
            for statement in _seed_sql("postgres").split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"end": end})  # type: ignore[call-overload]
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('deliveries', 'id'), max(id)) FROM deliveries"
            )
            conn.execute("VACUUM ANALYZE")
            conn.execute("CREATE TABLE bench_seed (seeded_end double precision NOT NULL)")
            conn.execute("INSERT INTO bench_seed VALUES (%s)", (end,))
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)
    return end


def _time(store: Any, unit: Any) -> dict[str, float]:
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        store.read_sync(unit)
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(samples), 2),
        "max_ms": round(max(samples), 2),
        "first_ms": round(samples[0], 2),
    }


# Budgeted (<= 50 ms): what the overview and the lists run on every page view.
BUDGETED = (
    "overview",
    "deliveries_newest",
    "deliveries_failed",
    "deliveries_unknown",
    "deliveries_channel_chat",
    "deliveries_one_thread",
    "deliveries_one_correlation",
    "deliveries_last_hour",
    "deliveries_deep_page",
    "bulk_preview_retry_failed_sms",
    "failures_last_hour",
    "failures_last_hour_by_thread",
    "change_feed_fingerprint",
)


def measure(kind: str) -> dict[str, Any]:
    end = seed(kind)
    url = _sqlite_url() if kind == "sqlite" else _pg_url()
    # Migrations run: a cache seeded before a later migration (a new table the overview
    # reads, say) is brought up to date instead of failing.
    store = open_store(url)
    now = end + 1.0
    last_hour = FailureFilter(since=end - 3600)
    lists = {
        "deliveries_newest": DeliveryFilter(),
        "deliveries_failed": DeliveryFilter(status=Status.FAILED),
        "deliveries_unknown": DeliveryFilter(status=Status.UNKNOWN),
        "deliveries_channel_chat": DeliveryFilter(channel="chat"),
        "deliveries_one_thread": DeliveryFilter(thread_id="chat-4242"),
        "deliveries_one_correlation": DeliveryFilter(correlation_id="corr-777777"),
        "deliveries_last_hour": DeliveryFilter(since=end - 3600),
    }
    try:
        queries: dict[str, Any] = {"overview": _time(store, overview(now=now))}
        for name, where in lists.items():
            queries[name] = _time(store, deliveries_page(where, limit=50))
        queries["deliveries_deep_page"] = _time(
            store, deliveries_page(DeliveryFilter(), before_id=DELIVERIES // 2, limit=50)
        )
        queries["bulk_preview_retry_failed_sms"] = _time(
            store,
            count_matching(
                DeliveryFilter(channel="sms"), (Status.FAILED, Status.UNKNOWN, Status.EXPIRED)
            ),
        )
        queries["failures_last_hour"] = _time(store, list_failures(last_hour, limit=100))
        queries["failures_last_hour_by_thread"] = _time(
            store, group_failures(last_hour, by="thread", limit=100)
        )
        queries["change_feed_fingerprint"] = _time(store, change_marks())
        for window in ("1h", "6h", "24h"):
            # cold: a console's first request (no bucket cached); warm: every later one
            queries[f"charts_{window}_cold"] = _time(store, charts(window, now=now))
            cache = ChartCache()
            store.read_sync(charts(window, now=now, cache=cache))
            queries[f"charts_{window}"] = _time(store, charts(window, now=now, cache=cache))
        answers = {
            "overview_channels": len(store.read_sync(overview(now=now)).channels),
            "queued": store.read_sync(overview(now=now)).totals.queued,
            "failed_deliveries": store.read_sync(
                count_matching(DeliveryFilter(), (Status.FAILED,))
            ),
        }
    finally:
        store.close()
    return {
        "store": kind,
        "rows": {
            "deliveries": DELIVERIES,
            "delivery_attempts": DELIVERIES * ATTEMPTS_PER_DELIVERY,
            "job_failures": FAILURES,
        },
        "answers": answers,
        "budgeted": list(BUDGETED),
        "queries": queries,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite"), indent=2))
