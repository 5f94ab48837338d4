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
import time

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn=dsn, server_settings={"search_path": schema})


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
        started = time.perf_counter()
        await asyncio.gather(
            *(qm.run(batch_size=args.batch_size, mode=QueueExecutionMode.drain) for qm in managers)
        )
        process_seconds = time.perf_counter() - started
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
