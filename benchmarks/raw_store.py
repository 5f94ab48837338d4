"""Measurement 1: the raw store limit, single-row commits per second.

SQLite: one connection with exactly relaybox's pragmas (WAL, synchronous=FULL), one INSERT per
``BEGIN IMMEDIATE ... COMMIT``. PostgreSQL: the same server relaybox uses, synchronous_commit
on, one INSERT per autocommitted statement from 1 and from 8 connections (8 processes, so the
client's GIL is not what is measured).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import PG_URL, summary, work_dir
from relaybox.store.sqlite import PRAGMAS, SqliteConnector

SECONDS = 2.0


def sqlite_commits(path: Path, seconds: float = SECONDS, synchronous: str | None = None) -> float:
    conn = SqliteConnector(str(path)).connect()  # relaybox's own pragmas
    if synchronous:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, v TEXT, at REAL)")
    n = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw (v, at) VALUES (?, ?)", ("x" * 64, time.time()))
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def _pg_client(schema: str, seconds: float, start_at: float, out: Any) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"SET search_path = {schema}")
        while time.time() < start_at:
            time.sleep(0.001)
        n = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            conn.execute("INSERT INTO raw (v, at) VALUES (%s, %s)", ("x" * 64, time.time()))
            n += 1
    out.put(n)


def pg_commits(connections: int, seconds: float = SECONDS) -> float:
    schema = f"raw_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.raw (id bigserial PRIMARY KEY, v text, at float8)")
    try:
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        start_at = time.time() + 1.5  # every client connected before the clock starts
        procs = [
            ctx.Process(target=_pg_client, args=(schema, seconds, start_at, out))
            for _ in range(connections)
        ]
        for p in procs:
            p.start()
        total = sum(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(30)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return total / seconds


def measure(runs: int = 3) -> dict[str, Any]:
    folder = work_dir()
    sqlite_full, sqlite_normal, pg1, pg8 = [], [], [], []
    for run in range(runs):
        path = folder / f"raw-{run}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        sqlite_full.append(sqlite_commits(path))
        sqlite_normal.append(sqlite_commits(path, synchronous="NORMAL"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        pg1.append(pg_commits(1))
        pg8.append(pg_commits(8))
    return {
        "sqlite_pragmas": list(PRAGMAS),
        "sqlite_commits_per_second": summary(sqlite_full, 0),
        "sqlite_normal_commits_per_second": summary(sqlite_normal, 0),
        "postgres_1_connection_commits_per_second": summary(pg1, 0),
        "postgres_8_connections_commits_per_second": summary(pg8, 0),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(runs=1), indent=2))
