"""Measurement 6: the operator's questions on a store with 1,000,000 failures and 5,000,000
attempts.

The seeded store is cached (SQLite: ``benchmarks/.cache/operators-v1.db``; PostgreSQL: the
schema ``rb_bench_operators_v1``) and built once, by SQL, with relaybox's own schema:
250,000 inbound messages over 50,000 chats, two replies each (500,000 deliveries), ten attempt
rows per delivery (5,000,000), and 1,000,000 failures spread over 30 days. "The last hour" is
the hour before the newest seeded failure, so a cache of any age asks the same question.
Each question is asked through relaybox's own query code (what ``relaybox failures`` and
``relaybox trace`` run), in a fresh store handle, several times.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from typing import Any

import psycopg

from benchmarks.common import CACHE_DIR, PG_URL
from relaybox.audit.query import FailureFilter, group_failures, list_failures
from relaybox.store import open_store
from relaybox.trace import trace

SEED_VERSION = 1
INBOUND = 250_000
DELIVERIES = 2 * INBOUND
ATTEMPTS_PER_DELIVERY = 10
FAILURES = 1_000_000
CHATS = 50_000
SPAN = 30 * 86400.0
SQLITE_PATH = CACHE_DIR / f"operators-v{SEED_VERSION}.db"
PG_SCHEMA = f"rb_bench_operators_v{SEED_VERSION}"
TRACED_INBOUND = 123_457
REPEAT = 15

# One seeding script per store, written against relaybox's tables; :end is the newest time.
_SQLITE_SEED = f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {INBOUND})
INSERT INTO inbound_messages (id, channel, external_id, thread_id, resource_id, body,
    correlation_id, status, received_at, handled_at)
SELECT i, 'sms', 'ext-' || i, 'chat-' || (i % {CHATS}), 'user-' || (i % {CHATS}), 'hello',
       'corr-' || i, 'reply_enqueued', :end - ({INBOUND} - i) * {SPAN / INBOUND},
       :end - ({INBOUND} - i) * {SPAN / INBOUND} + 1
FROM seq;

WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {DELIVERIES})
INSERT INTO deliveries (id, reply_key, content_hash, channel, thread_id, recipient, resource_id,
    correlation_id, status, part_count, start_index, attempts, max_attempts, created_at,
    updated_at, available_at, finished_at, inbound_id)
SELECT i, 'rk-' || i, 'h', 'sms', 'chat-' || ((i + 1) / 2 % {CHATS}),
       'user-' || ((i + 1) / 2 % {CHATS}), 'user-' || ((i + 1) / 2 % {CHATS}),
       'corr-' || ((i + 1) / 2), 'delivered', 1, 1, 3, 8,
       :end - ({DELIVERIES} - i) * {SPAN / DELIVERIES},
       :end - ({DELIVERIES} - i) * {SPAN / DELIVERIES},
       :end - ({DELIVERIES} - i) * {SPAN / DELIVERIES},
       :end - ({DELIVERIES} - i) * {SPAN / DELIVERIES}, (i + 1) / 2
FROM seq;

INSERT INTO delivery_parts (delivery_id, part_index, guid, body, outcome, sent_at)
SELECT id, 0, 'guid-' || id, 'reply', 'surfaced', finished_at FROM deliveries;

WITH RECURSIVE seq(i) AS (
    SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {DELIVERIES * ATTEMPTS_PER_DELIVERY - 1})
INSERT INTO delivery_attempts (delivery_id, attempt, part_index, guid, worker_id, started_at,
    latency_ms, outcome, error, correlation_id)
SELECT i / {ATTEMPTS_PER_DELIVERY} + 1, i % {ATTEMPTS_PER_DELIVERY} + 1, 0,
       'guid-' || (i / {ATTEMPTS_PER_DELIVERY} + 1), 'bench-worker',
       :end - ({DELIVERIES * ATTEMPTS_PER_DELIVERY} - i)
              * {SPAN / (DELIVERIES * ATTEMPTS_PER_DELIVERY)},
       12.5,
       CASE WHEN i % {ATTEMPTS_PER_DELIVERY} = {ATTEMPTS_PER_DELIVERY - 1}
            THEN 'surfaced' ELSE 'transient' END,
       CASE WHEN i % {ATTEMPTS_PER_DELIVERY} = {ATTEMPTS_PER_DELIVERY - 1}
            THEN NULL ELSE 'HTTP 503 from the gateway' END,
       'corr-' || ((i / {ATTEMPTS_PER_DELIVERY} + 2) / 2)
FROM seq;

WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {FAILURES})
INSERT INTO job_failures (queue, job_id, stage, channel, thread_id, resource_id,
    correlation_id, error_type, message, attempt, terminal, worker_id, created_at)
SELECT 'deliveries', CAST(i % {DELIVERIES} + 1 AS TEXT),
       CASE i % 3 WHEN 0 THEN 'send' WHEN 1 THEN 'reconcile' ELSE 'claim' END, 'sms',
       'chat-' || (i % {CHATS}), 'user-' || (i % {CHATS}), 'corr-' || (i % {INBOUND} + 1),
       CASE i % 4 WHEN 0 THEN 'TransientError' WHEN 1 THEN 'RateLimited'
                  WHEN 2 THEN 'AmbiguousSend' ELSE 'PermanentError' END,
       'HTTP 503 from the gateway', i % 8 + 1, i % 5 = 0, 'bench-worker',
       :end - ({FAILURES} - i) * {SPAN / FAILURES}
FROM seq;
"""

_PG_SEED = f"""
INSERT INTO inbound_messages (channel, external_id, thread_id, resource_id, body,
    correlation_id, status, received_at, handled_at)
SELECT 'sms', 'ext-' || i, 'chat-' || (i %% {CHATS}), 'user-' || (i %% {CHATS}), 'hello',
       'corr-' || i, 'reply_enqueued', %(end)s - ({INBOUND} - i) * {SPAN / INBOUND},
       %(end)s - ({INBOUND} - i) * {SPAN / INBOUND} + 1
FROM generate_series(1, {INBOUND}) AS i;

INSERT INTO deliveries (reply_key, content_hash, channel, thread_id, recipient, resource_id,
    correlation_id, status, part_count, start_index, attempts, max_attempts, created_at,
    updated_at, available_at, finished_at, inbound_id)
SELECT 'rk-' || i, 'h', 'sms', 'chat-' || ((i + 1) / 2 %% {CHATS}),
       'user-' || ((i + 1) / 2 %% {CHATS}), 'user-' || ((i + 1) / 2 %% {CHATS}),
       'corr-' || ((i + 1) / 2), 'delivered', 1, 1, 3, 8,
       %(end)s - ({DELIVERIES} - i) * {SPAN / DELIVERIES},
       %(end)s - ({DELIVERIES} - i) * {SPAN / DELIVERIES},
       %(end)s - ({DELIVERIES} - i) * {SPAN / DELIVERIES},
       %(end)s - ({DELIVERIES} - i) * {SPAN / DELIVERIES}, (i + 1) / 2
FROM generate_series(1, {DELIVERIES}) AS i;

INSERT INTO delivery_parts (delivery_id, part_index, guid, body, outcome, sent_at)
SELECT id, 0, 'guid-' || id, 'reply', 'surfaced', finished_at FROM deliveries;

INSERT INTO delivery_attempts (delivery_id, attempt, part_index, guid, worker_id, started_at,
    latency_ms, outcome, error, correlation_id)
SELECT i / {ATTEMPTS_PER_DELIVERY} + 1, i %% {ATTEMPTS_PER_DELIVERY} + 1, 0,
       'guid-' || (i / {ATTEMPTS_PER_DELIVERY} + 1), 'bench-worker',
       %(end)s - ({DELIVERIES * ATTEMPTS_PER_DELIVERY} - i)
                 * {SPAN / (DELIVERIES * ATTEMPTS_PER_DELIVERY)},
       12.5,
       CASE WHEN i %% {ATTEMPTS_PER_DELIVERY} = {ATTEMPTS_PER_DELIVERY - 1}
            THEN 'surfaced' ELSE 'transient' END,
       CASE WHEN i %% {ATTEMPTS_PER_DELIVERY} = {ATTEMPTS_PER_DELIVERY - 1}
            THEN NULL ELSE 'HTTP 503 from the gateway' END,
       'corr-' || ((i / {ATTEMPTS_PER_DELIVERY} + 2) / 2)
FROM generate_series(0, {DELIVERIES * ATTEMPTS_PER_DELIVERY - 1}) AS i;

INSERT INTO job_failures (queue, job_id, stage, channel, thread_id, resource_id,
    correlation_id, error_type, message, attempt, terminal, worker_id, created_at)
SELECT 'deliveries', (i %% {DELIVERIES} + 1)::text,
       CASE i %% 3 WHEN 0 THEN 'send' WHEN 1 THEN 'reconcile' ELSE 'claim' END, 'sms',
       'chat-' || (i %% {CHATS}), 'user-' || (i %% {CHATS}), 'corr-' || (i %% {INBOUND} + 1),
       CASE i %% 4 WHEN 0 THEN 'TransientError' WHEN 1 THEN 'RateLimited'
                  WHEN 2 THEN 'AmbiguousSend' ELSE 'PermanentError' END,
       'HTTP 503 from the gateway', i %% 8 + 1, i %% 5 = 0, 'bench-worker',
       %(end)s - ({FAILURES} - i) * {SPAN / FAILURES}
FROM generate_series(1, {FAILURES}) AS i;
"""


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
    """Build the cached store if missing; return its newest seeded time and print progress."""
    end = seeded_end(kind)
    if end is not None:
        return end
    end = time.time()
    started = time.monotonic()
    print(f"  seeding the {kind} operator store (once, cached) ...", flush=True)
    if kind == "sqlite":
        CACHE_DIR.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            SQLITE_PATH.with_name(SQLITE_PATH.name + suffix).unlink(missing_ok=True)
        open_store(_sqlite_url()).close()  # relaybox's schema, all migrations
        conn = sqlite3.connect(SQLITE_PATH, isolation_level=None)
        conn.execute("PRAGMA synchronous=OFF")  # a cache: rebuilt if a seeding is cut short
        conn.execute("BEGIN")
        for statement in _SQLITE_SEED.split(";\n"):
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
            for statement in _PG_SEED.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"end": end})  # type: ignore[call-overload]
            conn.execute("VACUUM ANALYZE")
            conn.execute("CREATE TABLE bench_seed (seeded_end double precision NOT NULL)")
            conn.execute("INSERT INTO bench_seed VALUES (%s)", (end,))
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)
    return end


def _time(store: Any, unit: Any) -> dict[str, float]:
    first = 0.0
    samples = []
    for n in range(REPEAT):
        started = time.perf_counter()
        store.read_sync(unit)
        elapsed = (time.perf_counter() - started) * 1000
        if n == 0:
            first = elapsed
        samples.append(elapsed)
    return {
        "median_ms": round(statistics.median(samples), 2),
        "max_ms": round(max(samples), 2),
        "first_ms": round(first, 2),
    }


def measure(kind: str) -> dict[str, Any]:
    end = seed(kind)
    url = _sqlite_url() if kind == "sqlite" else _pg_url()
    store = open_store(url, run_migrations=False)
    try:
        last_hour = FailureFilter(since=end - 3600)
        found = store.read_sync(list_failures(last_hour, limit=100))
        groups = store.read_sync(group_failures(last_hour, by="thread", limit=100))
        timeline = store.read_sync(trace(f"inbound:{TRACED_INBOUND}"))
        queries = {
            "failures_last_hour": _time(store, list_failures(last_hour, limit=100)),
            "failures_last_hour_by_thread": _time(
                store, group_failures(last_hour, by="thread", limit=100)
            ),
            "trace_of_one_inbound": _time(store, trace(f"inbound:{TRACED_INBOUND}")),
        }
    finally:
        store.close()
    return {
        "store": kind,
        "rows": {
            "job_failures": FAILURES,
            "delivery_attempts": DELIVERIES * ATTEMPTS_PER_DELIVERY,
            "deliveries": DELIVERIES,
            "inbound_messages": INBOUND,
        },
        "answers": {
            "failures_last_hour": len(found),
            "threads_last_hour": len(groups),
            "trace_events": len(timeline.events),
        },
        "queries": queries,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite"), indent=2))
