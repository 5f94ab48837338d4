"""Which PostgreSQL driver, and a pool or one writer? Measured on the worker's access pattern.

The worker's hot path is the *ack*: after a part is sent, one fenced UPDATE of its delivery
(by primary key) and one INSERT of the attempt row must commit before the next part goes out.
Up to ``concurrency`` deliveries (asyncio tasks) ack at once. This script runs that pattern
four ways, with the same SQL and ``synchronous_commit = on``:

* ``psycopg3 one writer``: psycopg 3 (sync) on one connection in a writer thread, every waiting
  ack in one transaction (group commit) -- relaybox's design (store/base.py);
* ``asyncpg one writer``: the same group commit with asyncpg on one connection, in asyncio;
* each "one writer" twice: two statements per ack, and one statement for the whole batch
  (``unnest`` of the ids; the shape of ``record_sent_batch`` in sql/postgres/outbox.sql);
* ``psycopg3 pool`` / ``asyncpg pool``: a pool of connections, one transaction per ack --
  the textbook design without batching.

Plus the raw round trip of ``SELECT 1``, and the client CPU each ack costs (on a 2-core machine
the worker's CPU is CPU the database does not get).

asyncpg is not a relaybox dependency; install it into the venv to run this:
``.venv/bin/pip install asyncpg && .venv/bin/python -m benchmarks.driver_choice``.
Results: printed, and written to ``benchmarks/results/driver_choice.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks.common import PG_URL, RESULTS_DIR, machine

ROWS = 5000
SCHEMA_SQL = """
CREATE TABLE bench_deliveries (
    id BIGINT PRIMARY KEY, start_index INTEGER NOT NULL DEFAULT 0,
    lease_epoch INTEGER NOT NULL DEFAULT 1, updated_at DOUBLE PRECISION);
CREATE TABLE bench_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, delivery_id BIGINT NOT NULL,
    part_index INTEGER NOT NULL, worker_id TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL);
INSERT INTO bench_deliveries (id) SELECT g FROM generate_series(1, 5000) AS g;
"""
# The two statements of one ack, in each driver's parameter style.
ADVANCE_PG3 = (
    "UPDATE bench_deliveries SET start_index = start_index + 1, updated_at = %s"
    " WHERE id = %s AND lease_epoch = 1"
)
ATTEMPT_PG3 = (
    "INSERT INTO bench_attempts (delivery_id, part_index, worker_id, started_at)"
    " VALUES (%s, 0, 'bench', %s)"
)
ADVANCE_APG = ADVANCE_PG3.replace("%s", "$1", 1).replace("%s", "$2", 1)
ATTEMPT_APG = ATTEMPT_PG3.replace("%s", "$1", 1).replace("%s", "$2", 1)
# A whole batch of acks in one statement (the shape of record_sent_batch in outbox.sql).
BATCH_SQL = """
WITH ack AS (SELECT unnest(%s::bigint[]) AS id),
moved AS (
    UPDATE bench_deliveries d SET start_index = start_index + 1, updated_at = %s
    FROM ack WHERE d.id = ack.id AND d.lease_epoch = 1 RETURNING d.id)
INSERT INTO bench_attempts (delivery_id, part_index, worker_id, started_at)
SELECT id, 0, 'bench', %s FROM moved
"""
BATCH_APG = BATCH_SQL.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$2", 1)


def _schema_url(schema: str) -> str:
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options=-csearch_path%3D{schema}"


# -- the two "one writer" designs -----------------------------------------------------------


class Psycopg3Writer:
    """relaybox's shape: a thread owns one sync connection; each batch is one transaction."""

    def __init__(self, url: str, *, one_statement: bool = False) -> None:
        self.one_statement = one_statement
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET synchronous_commit = on")
        self.jobs: queue.SimpleQueue[tuple[int, Future[None]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (first := self.jobs.get()) is not None:
            batch = [first]
            while True:
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.jobs.put(None)
                    break
                batch.append(item)
            now = time.time()
            self.conn.execute("BEGIN")
            if self.one_statement:
                self.conn.execute(BATCH_SQL, ([d for d, _ in batch], now, now))
            else:
                for delivery_id, _ in batch:
                    self.conn.execute(ADVANCE_PG3, (now, delivery_id))
                    self.conn.execute(ATTEMPT_PG3, (delivery_id, now))
            self.conn.execute("COMMIT")
            for _, future in batch:
                future.set_result(None)

    async def ack(self, delivery_id: int) -> None:
        future: Future[None] = Future()
        self.jobs.put((delivery_id, future))
        await asyncio.wrap_future(future)

    async def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self.conn.close()


class AsyncpgWriter:
    """The same group commit, asyncio-native: one asyncpg connection, one batching task."""

    def __init__(self, conn: Any, *, one_statement: bool = False) -> None:
        self.conn = conn
        self.one_statement = one_statement
        self.jobs: asyncio.Queue[tuple[int, asyncio.Future[None]]] = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    @classmethod
    async def open(cls, url: str, *, one_statement: bool = False) -> AsyncpgWriter:
        import asyncpg

        conn = await asyncpg.connect(url.split("?")[0], server_settings=_settings(url))
        await conn.execute("SET synchronous_commit = on")
        return cls(conn, one_statement=one_statement)

    async def _loop(self) -> None:
        while True:
            batch = [await self.jobs.get()]
            while not self.jobs.empty():
                batch.append(self.jobs.get_nowait())
            now = time.time()
            async with self.conn.transaction():
                if self.one_statement:
                    await self.conn.execute(BATCH_APG, [d for d, _ in batch], now)
                else:
                    for delivery_id, _ in batch:
                        await self.conn.execute(ADVANCE_APG, now, delivery_id)
                        await self.conn.execute(ATTEMPT_APG, delivery_id, now)
            for _, future in batch:
                future.set_result(None)

    async def ack(self, delivery_id: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.jobs.put((delivery_id, future))
        await future

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.conn.close()


class Psycopg3AsyncWriter(AsyncpgWriter):
    """The group commit of :class:`AsyncpgWriter` with psycopg 3's async connection: the same
    driver as relaybox, without the writer thread (separates driver cost from thread cost)."""

    @classmethod
    async def open_psycopg(cls, url: str, *, one_statement: bool) -> Psycopg3AsyncWriter:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.execute("SET synchronous_commit = on")
        return cls(conn, one_statement=one_statement)

    async def _loop(self) -> None:
        while True:
            batch = [await self.jobs.get()]
            while not self.jobs.empty():
                batch.append(self.jobs.get_nowait())
            now = time.time()
            async with self.conn.transaction():
                if self.one_statement:
                    await self.conn.execute(BATCH_SQL, ([d for d, _ in batch], now, now))
                else:
                    for delivery_id, _ in batch:
                        await self.conn.execute(ADVANCE_PG3, (now, delivery_id))
                        await self.conn.execute(ATTEMPT_PG3, (delivery_id, now))
            for _, future in batch:
                future.set_result(None)


def _settings(url: str) -> dict[str, str]:
    """asyncpg takes the schema as a server setting, not libpq ``options``."""
    schema = url.split("search_path%3D", 1)[1]
    return {"search_path": schema}


# -- the two pool designs -------------------------------------------------------------------


async def _psycopg3_pool(url: str, size: int) -> tuple[Callable[[int], Awaitable[None]], Any]:
    pool = AsyncConnectionPool(
        url, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)

    async def ack(delivery_id: int) -> None:
        async with pool.connection() as conn, conn.transaction():
            now = time.time()
            await conn.execute(ADVANCE_PG3, (now, delivery_id))
            await conn.execute(ATTEMPT_PG3, (delivery_id, now))

    return ack, pool.close


async def _asyncpg_pool(url: str, size: int) -> tuple[Callable[[int], Awaitable[None]], Any]:
    import asyncpg

    pool = await asyncpg.create_pool(
        url.split("?")[0], min_size=size, max_size=size, server_settings=_settings(url)
    )

    async def ack(delivery_id: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            now = time.time()
            await conn.execute(ADVANCE_APG, now, delivery_id)
            await conn.execute(ATTEMPT_APG, delivery_id, now)

    return ack, pool.close


# -- measuring ------------------------------------------------------------------------------


async def _drive(
    ack: Callable[[int], Awaitable[None]], acks: int, concurrency: int
) -> dict[str, float]:
    """``concurrency`` tasks ack parts one after another until ``acks`` are done."""
    counter = iter(range(acks))
    latencies: list[float] = []

    async def task() -> None:
        for n in counter:
            began = time.perf_counter()
            await ack(1 + n % ROWS)
            latencies.append(time.perf_counter() - began)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(task() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "acks_per_second": acks / wall,
        "client_cpu_us_per_ack": cpu / acks * 1e6,
        "p50_ms": statistics.median(latencies) * 1000,
    }


async def _round_trips(url: str, count: int) -> dict[str, float]:
    import asyncpg

    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        for _ in range(count):
            conn.execute("SELECT 1").fetchone()
        psycopg_us = (time.perf_counter() - began) / count * 1e6
    aconn = await asyncpg.connect(url.split("?")[0], server_settings=_settings(url))
    try:
        began = time.perf_counter()
        for _ in range(count):
            await aconn.fetchval("SELECT 1")
        asyncpg_us = (time.perf_counter() - began) / count * 1e6
    finally:
        await aconn.close()
    return {"psycopg3_sync_us": round(psycopg_us, 1), "asyncpg_us": round(asyncpg_us, 1)}


async def _run(acks: int, concurrency: int, pool_size: int, runs: int) -> dict[str, Any]:
    schema = f"bench_driver_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = _schema_url(schema)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA_SQL)
        results: dict[str, Any] = {"round_trip": await _round_trips(url, 2000)}
        designs: dict[str, Callable[[], Awaitable[tuple[Any, Any]]]] = {
            "psycopg3 one writer, 2 stmts/ack": lambda: _writer(Psycopg3Writer(url)),
            "asyncpg one writer, 2 stmts/ack": lambda: _async_writer(url),
            "psycopg3 one writer, 1 stmt/batch": lambda: _writer(
                Psycopg3Writer(url, one_statement=True)
            ),
            "asyncpg one writer, 1 stmt/batch": lambda: _async_writer(url, one_statement=True),
            "psycopg3 async one writer, 1 stmt/batch": lambda: _psycopg_async_writer(url),
            "psycopg3 pool, txn per ack": lambda: _psycopg3_pool(url, pool_size),
            "asyncpg pool, txn per ack": lambda: _asyncpg_pool(url, pool_size),
        }
        for name, make in designs.items():
            samples = []
            for _ in range(runs):
                ack, close = await make()
                try:
                    samples.append(await _drive(ack, acks, concurrency))
                finally:
                    await close()
            results[name] = {
                key: round(statistics.median(s[key] for s in samples), 1) for key in samples[0]
            }
        return results
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def _writer(writer: Psycopg3Writer) -> tuple[Any, Any]:
    return writer.ack, writer.close


async def _psycopg_async_writer(url: str) -> tuple[Any, Any]:
    writer = await Psycopg3AsyncWriter.open_psycopg(url, one_statement=True)
    return writer.ack, writer.close


async def _async_writer(url: str, *, one_statement: bool = False) -> tuple[Any, Any]:
    writer = await AsyncpgWriter.open(url, one_statement=one_statement)
    return writer.ack, writer.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acks", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64, help="deliveries in flight")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="runs per design (median kept)")
    args = parser.parse_args()
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise SystemExit(
            "asyncpg is needed for this comparison only: .venv/bin/pip install asyncpg"
        ) from None
    results = asyncio.run(_run(args.acks, args.concurrency, args.pool_size, args.runs))
    report = {"machine": machine(), "settings": vars(args), "results": results}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "driver_choice.json").write_text(json.dumps(report, indent=2) + "\n")
    rt = results.pop("round_trip")
    print(
        f"SELECT 1 round trip: psycopg3 {rt['psycopg3_sync_us']:.0f} us,"
        f" asyncpg {rt['asyncpg_us']:.0f} us"
    )
    print(f"{'design':40} {'acks/s':>9} {'client CPU us/ack':>18} {'p50 ms':>8}")
    for name, r in results.items():
        print(
            f"{name:40} {r['acks_per_second']:>9.0f} {r['client_cpu_us_per_ack']:>18.0f}"
            f" {r['p50_ms']:>8.1f}"
        )


if __name__ == "__main__":
    main()
