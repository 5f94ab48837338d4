"""procrastinate: defer and work no-op jobs on the same PostgreSQL server as relaybox.

Run by benchmarks/peers.py inside benchmarks/.peer-venv. Prints one JSON object.
Settings: the psycopg connector (procrastinate's default), an async no-op task, a worker
with ``concurrency`` jobs at once (the documented way to go faster with async tasks), and
``batch_defer_async`` for enqueueing (its documented fast path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time

import procrastinate
import psycopg


async def run(args: argparse.Namespace) -> dict[str, object]:
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {args.schema}")
    try:
        connector = procrastinate.PsycopgConnector(
            conninfo=args.dsn,
            kwargs={"options": f"-c search_path={args.schema}"},
            max_size=max(10, args.concurrency + 2),
        )
        app = procrastinate.App(connector=connector)
        done = 0

        @app.task(name="noop")
        async def noop() -> None:
            nonlocal done
            done += 1

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            started = time.perf_counter()
            for start in range(0, args.jobs, args.enqueue_batch):
                n = min(args.enqueue_batch, args.jobs - start)
                await noop.batch_defer_async(*([{}] * n))
            enqueue_seconds = time.perf_counter() - started

            started = time.perf_counter()
            await app.run_worker_async(
                concurrency=args.concurrency, wait=False, install_signal_handlers=False
            )
            process_seconds = time.perf_counter() - started
        if done != args.jobs:
            raise SystemExit(f"procrastinate processed {done} of {args.jobs} jobs")
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
    return {
        "library": "procrastinate",
        "version": procrastinate.__version__,
        "settings": {
            "connector": "PsycopgConnector",
            "worker_concurrency": args.concurrency,
            "enqueue": f"batch_defer_async, batches of {args.enqueue_batch}",
        },
        "jobs": args.jobs,
        "enqueue_per_second": args.jobs / enqueue_seconds,
        "process_per_second": args.jobs / process_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--enqueue-batch", type=int, default=100)
    args = parser.parse_args()
    # procrastinate warns that the App lives in __main__; harmless for a one-file benchmark.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
