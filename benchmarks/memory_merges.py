"""Concurrent working-memory merges: 4 processes x 8 shared scopes x 50 merges per scope.

Every process merges into the same 8 people's working memory at once (``asyncio.gather`` of
8 tasks, each doing 50 merges in a row), so group commit puts several scopes' row locks into
one transaction in every process. Before the store ordered row locks inside a batch, batches of
different processes locked in opposite orders and PostgreSQL spent its time detecting
deadlocks (hundreds per run, writes failing after 8 retries). Reported: writes/s over the
1,600 writes, writes that failed, lock-conflict retries, and PostgreSQL's deadlock counter.

    .venv/bin/python -m benchmarks.memory_merges [--runs 3] [--kind sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import PG_URL, PYTHON, fresh_store, summary, work_dir
from relaybox.store import open_store

PROCESSES = 4
SCOPES = 8
MERGES = 50
BUDGET_SECONDS = 60.0  # a process stops starting merges after this (reports what it did)

# One process: wait for the go file, merge, print a JSON line with what happened.
CHILD = """
import asyncio, json, logging, os, sys, time
from relaybox.memory import Scope, ScopedMemory
from relaybox.store import open_store

url, proc, go = sys.argv[1], sys.argv[2], sys.argv[3]
scopes, merges, budget = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
conflicts = 0
deadline = None

class Count(logging.Handler):
    def emit(self, record):
        global conflicts
        if "lock conflict" in record.getMessage():
            conflicts += 1

logging.getLogger("relaybox.store").addHandler(Count())
logging.getLogger("relaybox.store").setLevel(logging.INFO)

async def one_scope(store, n):
    memory = ScopedMemory(store, Scope(f"user-{n}", f"chat-{n}"))
    ok = failed = 0
    for k in range(merges):
        if time.monotonic() > deadline:  # out of time: report what got done
            break
        try:
            await memory.working.merge({f"p{proc}": k + 1, f"last-{proc}": f"{n}-{k}"})
            ok += 1
        except Exception as error:
            failed += 1
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}), file=sys.stderr)
    return ok, failed

async def main():
    store = open_store(url)
    while not os.path.exists(go):
        time.sleep(0.002)
    global deadline
    started = time.monotonic()
    deadline = started + budget
    results = await asyncio.gather(*(one_scope(store, n) for n in range(scopes)))
    elapsed = time.monotonic() - started
    store.close()
    print(json.dumps({
        "ok": sum(r[0] for r in results), "failed": sum(r[1] for r in results),
        "conflicts": conflicts, "elapsed": elapsed,
    }))

asyncio.run(main())
"""


def _deadlocks() -> int:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def run_once(
    url: str,
    *,
    processes: int = PROCESSES,
    scopes: int = SCOPES,
    merges: int = MERGES,
    budget: float = BUDGET_SECONDS,
) -> dict[str, Any]:
    """One run on the store at ``url``; returns writes/s, failures, retries, deadlocks."""
    open_store(url).close()  # migrate once, not in four processes at once
    go = work_dir() / f"go-{uuid.uuid4().hex[:8]}"
    children = [
        subprocess.Popen(
            [PYTHON, "-c", CHILD, url, str(p), str(go), str(scopes), str(merges), str(budget)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    postgres = not url.startswith("sqlite")
    deadlocks_before = _deadlocks() if postgres else 0
    time.sleep(1.0)  # every child has opened its store and waits for the go file
    started = time.monotonic()
    go.write_text("go")
    reports = []
    try:
        for child in children:
            out, err = child.communicate(timeout=budget + 120)
            if child.returncode != 0 or not out.strip():
                raise RuntimeError(f"merge process failed ({child.returncode}): {err[-2000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        go.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    ok = sum(r["ok"] for r in reports)
    return {
        "writes": ok,
        "expected": processes * scopes * merges,
        "failed": sum(r["failed"] for r in reports),
        "lock_conflict_retries": sum(r["conflicts"] for r in reports),
        "seconds": round(elapsed, 3),
        "writes_per_second": ok / elapsed,
        "deadlocks_in_database": (_deadlocks() - deadlocks_before) if postgres else 0,
    }


def measure(kind: str, *, runs: int = 3) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        with fresh_store(kind) as bench:
            samples.append(run_once(bench.url))
    return {
        "kind": kind,
        "processes": PROCESSES,
        "scopes": SCOPES,
        "merges_per_scope": MERGES,
        "writes_per_second": summary([s["writes_per_second"] for s in samples]),
        "writes": sum(s["writes"] for s in samples),
        "expected": sum(s["expected"] for s in samples),
        "failed": sum(s["failed"] for s in samples),
        "lock_conflict_retries": sum(s["lock_conflict_retries"] for s in samples),
        "deadlocks_in_database": sum(s["deadlocks_in_database"] for s in samples),
        "runs": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kind", default="sqlite,postgres")
    args = parser.parse_args(argv)
    results = [measure(kind, runs=args.runs) for kind in args.kind.split(",")]
    for r in results:
        rate = r["writes_per_second"]
        print(
            f"{r['kind']}: {rate['median']:,.0f} writes/s"
            f" (min {rate['min']:,.0f}, max {rate['max']:,.0f});"
            f" {r['writes']}/{r['expected']} writes done, failed {r['failed']},"
            f" lock-conflict retries {r['lock_conflict_retries']},"
            f" deadlocks {r['deadlocks_in_database']}"
        )
    out = Path(__file__).resolve().parent / "results" / "memory_merges.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
