"""pgqueuer: enqueue and drain no-op jobs on the same PostgreSQL server as relaybox.

Run by benchmarks/peers.py inside benchmarks/.peer-venv. Prints one JSON object.
Settings follow pgqueuer's own benchmark (tools/benchmark.py, "drain" strategy): asyncpg
driver, uvloop, dequeue batches of 10, and N QueueManager instances (each with its own
connection) in one process; enqueue in batches of 10 like its producer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode

APP_NAME = f"pgqueuer-bench-{os.getpid()}"  # finds this process's backends for the CPU figure
_TICK = os.sysconf("SC_CLK_TCK")


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        dsn=dsn, server_settings={"search_path": schema, "application_name": APP_NAME}
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (same as relaybox's benchmark)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


async def backend_cpu(admin: asyncpg.Connection) -> dict[int, float]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APP_NAME
    )
    return {int(r["pid"]): cpu_seconds(int(r["pid"])) for r in rows}


async def run(args: argparse.Namespace) -> dict[str, object]:
    admin = await asyncpg.connect(dsn=args.dsn)
    await admin.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
    await admin.execute(f"CREATE SCHEMA {args.schema}")
    try:
        setup = await connect(args.dsn, args.schema)
        queries = Queries(AsyncpgDriver(setup))
        await queries.install(create_schema=False)

        started = time.perf_counter()
        for start in range(0, args.jobs, args.enqueue_batch):
            n = min(args.enqueue_batch, args.jobs - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        enqueue_seconds = time.perf_counter() - started

        done = 0
        managers = []
        for _ in range(args.instances):
            qm = QueueManager(Queries(AsyncpgDriver(await connect(args.dsn, args.schema))))

            @qm.entrypoint("noop")
            async def noop(job: Job) -> None:
                nonlocal done
                done += 1

            managers.append(qm)
        backends_before = await backend_cpu(admin)
        own_before = cpu_seconds(os.getpid())
        started = time.perf_counter()
        await asyncio.gather(
            *(qm.run(batch_size=args.batch_size, mode=QueueExecutionMode.drain) for qm in managers)
        )
        process_seconds = time.perf_counter() - started
        own_cpu = cpu_seconds(os.getpid()) - own_before
        backends_cpu = sum(
            max(0.0, cpu_seconds(pid) - before) for pid, before in backends_before.items()
        )
        if done != args.jobs:
            raise SystemExit(f"pgqueuer processed {done} of {args.jobs} jobs")
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
        await admin.close()
    return {
        "library": "pgqueuer",
        "version": pgqueuer.__version__,
        "settings": {
            "driver": "asyncpg",
            "event_loop": "uvloop",
            "queue_managers": args.instances,
            "dequeue_batch_size": args.batch_size,
            "enqueue_batch_size": args.enqueue_batch,
        },
        "jobs": args.jobs,
        "enqueue_per_second": args.jobs / enqueue_seconds,
        "process_per_second": args.jobs / process_seconds,
        # CPU µs per processed job: this process + its PostgreSQL backends (from /proc)
        "cpu_us_per_job": (own_cpu + backends_cpu) * 1e6 / args.jobs,
        "cpu_us_per_job_by_group": {
            "workers": round(own_cpu * 1e6 / args.jobs, 1),
            "postgres": round(backends_cpu * 1e6 / args.jobs, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--enqueue-batch", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
