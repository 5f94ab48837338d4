"""The store: one writer thread per process that runs units of work with group commit.

A *unit of work* is a plain function ``unit(tx) -> result`` that issues named queries on a
:class:`Tx`. Callers submit units; the writer thread takes every unit waiting in its queue,
runs them inside **one** transaction (each in its own savepoint, so one unit's failure never
undoes another's) and commits once. A caller's future resolves only after that commit, so an
acknowledged write is as durable as the store makes a commit, while many concurrent callers
share the cost of one fsync. This is what lets one worker process deliver many parts per
commit without weakening the per-part guarantee.

Reads do not queue behind writes: :meth:`Store.read` runs a unit on a small pool of read
connections of their own, each unit in a read-only snapshot (SQLite in WAL mode lets readers run
beside the writer; PostgreSQL a ``READ ONLY`` transaction on another connection). An operator's
``relaybox trace`` or an agent's memory read is never stuck behind a batch of acks.

A store opened ``read_only`` (inspection commands) has no writer at all: it never creates,
migrates or writes the database (see :func:`relaybox.store.open_store`).

Drivers (SQLite, PostgreSQL) only supply a :class:`Connector`: how to connect, begin, commit,
which errors mean the connection is gone, and how a worker is woken when work appears.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from relaybox.errors import StoreConnectionLost, StoreReadOnly, StoreUnavailable

log = logging.getLogger("relaybox.store")

T = TypeVar("T")
Row = dict[str, Any]
Params = Mapping[str, Any]


class Tx(Protocol):
    """What a unit of work may do inside its transaction."""

    dialect: str
    # True when every statement is a network round trip (PostgreSQL): units then prefer one
    # set-based statement over many small ones. False in process (SQLite), where small
    # prepared statements are cheaper than building one big one.
    network_round_trips: bool

    def execute(self, query: str, params: Params | None = None) -> int:
        """Run a named query; return the number of rows it changed."""

    def execute_many(self, query: str, params: Sequence[Params]) -> int:
        """Run a named query once per parameter set, in one driver call; return rows changed.

        Much cheaper than a loop of :meth:`execute` (SQLite steps one prepared statement;
        psycopg pipelines), but says nothing about which parameter set changed what. Scalar
        parameters only (no lists).
        """

    def fetch_one(self, query: str, params: Params | None = None) -> Row | None:
        """Run a named query; return its first row or ``None``."""

    def fetch_all(self, query: str, params: Params | None = None) -> list[Row]:
        """Run a named query; return all its rows."""

    def execute_script(self, sql: str) -> None:
        """Run raw SQL statements (migrations only)."""


Unit = Callable[[Tx], T]


class WakeSource(Protocol):
    """What wakes an idle worker: LISTEN/NOTIFY on PostgreSQL, a data_version watch on SQLite.

    Wake-ups are hints, never the source of truth: the worker keeps a safety-net poll.
    """

    @property
    def listening(self) -> bool:
        """True while wake-ups can arrive (the worker polls fast otherwise)."""
        ...

    def set_waiting(self, waiting: bool) -> None:
        """The claim loop starts (True) or stops (False) waiting for work."""

    async def run(self) -> None:
        """Watch until cancelled, calling the wake callback when work may have appeared."""


class Connector(Protocol):
    """The small part of a store that differs per database."""

    dialect: str
    network_round_trips: bool  # see Tx.network_round_trips
    read_only: bool  # opened for inspection: never create, migrate or write

    def connect(self) -> Any: ...

    def connect_reader(self) -> Any | None:
        """A connection for read units beside the writer; None if reads must share the
        writer's connection (an in-memory SQLite database exists once per connection)."""
        ...

    def begin(self, conn: Any, *, write: bool) -> None: ...

    def begin_read(self, conn: Any) -> None:
        """Start a read-only snapshot on a reader connection (ended with rollback)."""
        ...

    def commit(self, conn: Any) -> None: ...

    def rollback(self, conn: Any) -> None: ...

    def make_tx(self, conn: Any) -> Tx: ...

    def is_disconnect(self, error: BaseException) -> bool: ...

    def is_unavailable(self, error: BaseException) -> bool:
        """The store cannot serve right now (disk full, locked, I/O error, connection lost)."""
        ...

    def close(self, conn: Any) -> None: ...

    def describe(self) -> str: ...

    def wake_source(self, channels: Collection[str], wake: Callable[[], None]) -> WakeSource | None:
        """How a worker on ``channels`` learns of new work; None: poll only."""
        ...


class Locking(Generic[T]):
    """A unit of work that takes a row lock named ``lock_key`` (see :func:`locking`)."""

    __slots__ = ("lock_key", "unit")

    def __init__(self, lock_key: str, unit: Unit[T]) -> None:
        self.lock_key = lock_key
        self.unit = unit

    def __call__(self, tx: Tx) -> T:
        return self.unit(tx)


def locking(lock_key: str, unit: Unit[T]) -> Locking[T]:
    """Mark ``unit`` as taking the row lock ``lock_key`` (e.g. ``"memory:<resource>:<thread>"``).

    Group commit runs many units in one transaction, and each holds its row locks until that
    transaction commits. Two processes whose batches lock rows A and B in opposite orders
    deadlock (PostgreSQL then aborts one unit, which is retried: a throughput collapse under
    ordinary load). The store therefore runs the marked units of a batch in ``lock_key`` order
    (in the slots they occupy; unmarked units keep their place, units with the same key keep
    submission order), so every batch of every process takes these locks in one global order
    and no cycle can form. A unit that locks several rows must lock them in key order itself
    and use its smallest key here. Keys of different capabilities are ordered by their prefix.
    A unit class can instead carry a ``lock_key`` string attribute of its own.
    """
    return Locking(lock_key, unit)


def _in_lock_order(jobs: list[_Job[Any]]) -> list[_Job[Any]]:
    slots = [i for i, job in enumerate(jobs) if isinstance(_lock_key(job), str)]
    if len(slots) < 2:
        return jobs
    keyed = sorted((jobs[i] for i in slots), key=_lock_key)  # stable: same key, same order
    ordered = list(jobs)
    for slot, job in zip(slots, keyed, strict=True):
        ordered[slot] = job
    return ordered


def _lock_key(job: _Job[Any]) -> Any:
    # Any unit object with a ``lock_key`` string takes part (Locking, or a unit class's own).
    return getattr(job.unit, "lock_key", None)


@dataclass
class _Job(Generic[T]):
    unit: Unit[T]
    write: bool
    future: Future[T] = field(default_factory=Future)


_STOP = object()


class Store:
    """A database behind one background writer thread (see module docstring)."""

    def __init__(self, connector: Connector, *, max_batch: int = 512, readers: int = 2) -> None:
        self.connector = connector
        self.dialect = connector.dialect
        self.read_only = connector.read_only
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: Any = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._readers: _Readers | None = None
        # Called from the writer thread with the number of units each write batch committed
        # (the group-commit size). A tuple swapped whole, so the writer reads it without a lock.
        self._batch_listeners: tuple[Callable[[int], None], ...] = ()
        self._failed_listeners: set[int] = set()
        if self.read_only:
            # No writer at all; the first reader connects now so a bad URL fails at open time.
            self._readers = _Readers(connector, readers, first=_connect_reader(connector))
            return
        # Connect once up front so an unusable URL fails at open time with a clear error.
        self._conn = self._connect()
        first = _connect_reader(connector)
        if first is not None:
            self._readers = _Readers(connector, readers, first=first)
        self._thread = threading.Thread(target=self._loop, name="relaybox-store", daemon=True)
        self._thread.start()

    # -- submitting work ---------------------------------------------------------------

    def submit(self, unit: Unit[T], *, write: bool = True) -> Future[T]:
        """Queue a unit of work; the future resolves after its transaction committed.

        ``write=False`` units run on the read connections (a read-only snapshot, never
        behind the writer's queue) when the store has them.
        """
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if not write and self._readers is not None:
            return self._readers.submit(unit)
        if self.read_only:
            raise StoreReadOnly(
                f"store {self.connector.describe()} was opened read-only (for inspection)"
            )
        job: _Job[T] = _Job(unit, write)
        self._queue.put(job)
        return job.future

    async def run(self, unit: Unit[T], *, write: bool = True) -> T:
        """Run a unit of work from asyncio code."""
        return await asyncio.wrap_future(self.submit(unit, write=write))

    def run_sync(self, unit: Unit[T], *, write: bool = True) -> T:
        """Run a unit of work from synchronous code (CLI, tests)."""
        return self.submit(unit, write=write).result()

    async def read(self, unit: Unit[T]) -> T:
        """Run a read unit in a snapshot on a read connection (not behind queued writes).

        It sees every write whose future has resolved. A unit that tries to write fails.
        """
        return await self.run(unit, write=False)

    def read_sync(self, unit: Unit[T]) -> T:
        """:meth:`read` from synchronous code (CLI, tests)."""
        return self.run_sync(unit, write=False)

    def add_batch_listener(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(units)`` after every write batch the writer commits.

        ``units`` is how many units of work shared that one commit (the group-commit size),
        failed-and-rolled-back-to-savepoint units included: they shared the commit too. It runs
        on the writer thread, so it must be quick (observe a histogram, bump a counter). An
        exception from it is logged (the first one per listener with its traceback) and never
        affects the batch (it is already committed). It runs before the batch's futures resolve,
        so a caller whose write returned sees it counted. Returns a function that removes
        the listener. This is how metrics see the writer without the store importing them.
        """
        self._batch_listeners = (*self._batch_listeners, listener)

        def remove() -> None:
            self._batch_listeners = tuple(f for f in self._batch_listeners if f is not listener)

        return remove

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
        if self._readers is not None:
            self._readers.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread -------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            return self.connector.connect()
        except Exception as error:
            raise StoreUnavailable(
                f"cannot open store {self.connector.describe()}: {_one_line(error)}"
            ) from error

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Job[Any]] = [first]
            stop_after = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
            self._run_batch(batch)
            if stop_after:
                break
        if self._conn is not None:
            self._safe_close()

    def _run_batch(self, batch: Sequence[_Job[Any]]) -> None:
        jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        jobs = _in_lock_order(jobs)
        write = any(job.write for job in jobs)
        try:
            conn = self._begin(write=write)
            tx = self.connector.make_tx(conn)
            outcomes, commit = self._run_units(conn, tx, jobs)
            if commit:
                self.connector.commit(conn)
        except BaseException as error:  # noqa: BLE001 - every waiter must hear of it
            self._fail_batch(jobs, error)
            return
        if commit and write and self._batch_listeners:
            # Before the futures resolve: a caller whose write returned sees it counted.
            self._tell_batch_listeners(len(jobs))
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(self._translate(value))

    def _tell_batch_listeners(self, units: int) -> None:
        for listener in self._batch_listeners:
            try:
                listener(units)
            except Exception:
                key = id(listener)
                if key in self._failed_listeners:
                    log.debug("store batch listener %r failed again", listener, exc_info=True)
                    continue
                self._failed_listeners.add(key)
                log.exception("store batch listener %r failed (logged once)", listener)

    def _begin(self, *, write: bool) -> Any:
        """Open the batch's transaction, reconnecting first if needed.

        A connection that died while idle (server restart, pg_terminate_backend) is only
        noticed here; nothing of the batch has run yet, so reconnecting once and beginning
        again is safe and spares the batch's callers an error.
        """
        if self._conn is None:
            self._conn = self._connect()
        try:
            self.connector.begin(self._conn, write=write)
        except Exception as error:
            if not self.connector.is_disconnect(error):
                raise
            log.info("store connection was lost while idle; reconnecting: %s", _one_line(error))
            self._safe_close()
            self._conn = self._connect()
            self.connector.begin(self._conn, write=write)
        return self._conn

    def _run_units(
        self, conn: Any, tx: Tx, jobs: Sequence[_Job[Any]]
    ) -> tuple[list[tuple[bool, Any]], bool]:
        """Run the batch's units; return their outcomes and whether to commit."""
        if len(jobs) == 1:
            # A lone unit needs no savepoint: if it fails, the whole transaction rolls back.
            try:
                return [(True, jobs[0].unit(tx))], True
            except Exception as error:
                if self.connector.is_disconnect(error):
                    raise
                self.connector.rollback(conn)
                return [(False, error)], False
        outcomes: list[tuple[bool, Any]] = []
        # On PostgreSQL, closing one unit's savepoint and opening the next's travel together:
        # one round trip per unit instead of two (or three after a failed unit). SQLite, in
        # process, runs them one by one.
        fold = self.connector.network_round_trips
        pending: list[str] = []
        for number, job in enumerate(jobs):
            savepoint = f"unit_{number}"
            self._savepoint_sql(tx, [*pending, f"SAVEPOINT {savepoint}"], fold)
            try:
                value = job.unit(tx)
            except Exception as error:
                if self.connector.is_disconnect(error):
                    raise
                pending = [f"ROLLBACK TO SAVEPOINT {savepoint}", f"RELEASE SAVEPOINT {savepoint}"]
                outcomes.append((False, error))
                continue
            pending = [f"RELEASE SAVEPOINT {savepoint}"]
            outcomes.append((True, value))
        if len(pending) > 1:
            # The last unit failed: undo it (COMMIT releases a plain savepoint by itself).
            self._savepoint_sql(tx, pending, fold)
        return outcomes, True

    @staticmethod
    def _savepoint_sql(tx: Tx, statements: list[str], fold: bool) -> None:
        if fold:
            tx.execute_script("; ".join(statements))
            return
        for statement in statements:
            tx.execute_script(statement)

    def _fail_batch(self, jobs: Sequence[_Job[Any]], error: BaseException) -> None:
        disconnected = self.connector.is_disconnect(error)
        if disconnected:
            self._safe_close()
        elif self._conn is not None:
            try:
                self.connector.rollback(self._conn)
            except Exception as rollback_error:  # noqa: BLE001 - logged, then reconnect
                log.warning("rollback failed, reconnecting: %s", _one_line(rollback_error))
                self._safe_close()
                disconnected = True
        if disconnected:
            wrapped: BaseException = StoreConnectionLost(
                f"store connection lost: {_one_line(error)}"
            )
            wrapped.__cause__ = error
        else:
            wrapped = self._translate(error)
        if isinstance(wrapped, StoreUnavailable):
            # Do not hammer a store that is restarting: the next batch reconnects.
            time.sleep(0.05)
        for job in jobs:
            job.future.set_exception(wrapped)

    def _translate(self, error: BaseException) -> BaseException:
        return _translate(self.connector, error)

    def _safe_close(self) -> None:
        if self._conn is not None:
            _close_quietly(self.connector, self._conn)
        self._conn = None


class _Readers:
    """A few connections that run read units in read-only snapshots, beside the writer.

    Reads are idempotent, so a read whose connection turned out to be dead (a server restart
    while it sat idle) is simply run once more on a fresh connection.
    """

    def __init__(self, connector: Connector, size: int, *, first: Any) -> None:
        self._connector = connector
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, size), thread_name_prefix="relaybox-read"
        )
        self._lock = threading.Lock()
        self._idle: list[Any] = [first]

    def submit(self, unit: Unit[T]) -> Future[T]:
        return self._pool.submit(self._run, unit)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(self._connector, conn)

    def _run(self, unit: Unit[T]) -> T:
        for attempt in (1, 2):
            conn = self._take()
            try:
                self._connector.begin_read(conn)
                value = unit(self._connector.make_tx(conn))
            except Exception as error:
                self._end(conn)
                if not self._connector.is_disconnect(error):
                    translated = _translate(self._connector, error)
                    if translated is error:
                        raise
                    raise translated from error
                if attempt == 2:
                    raise StoreConnectionLost(
                        f"store connection lost: {_one_line(error)}"
                    ) from error
                log.info("read connection was lost; reading again: %s", _one_line(error))
                continue
            self._end(conn)
            return value
        raise AssertionError("unreachable")

    def _end(self, conn: Any) -> None:
        """End the snapshot (nothing to commit) and keep the connection if it still works."""
        try:
            self._connector.rollback(conn)
        except Exception as error:  # noqa: BLE001 - a broken connection is dropped, not reused
            log.debug("ending a read failed; dropping its connection: %s", _one_line(error))
            _close_quietly(self._connector, conn)
            return
        self._give_back(conn)

    def _take(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = _connect_reader(self._connector)
        if conn is None:
            raise AssertionError("a driver that gave one reader connection refused another")
        return conn

    def _give_back(self, conn: Any) -> None:
        with self._lock:
            self._idle.append(conn)


def _connect_reader(connector: Connector) -> Any | None:
    try:
        return connector.connect_reader()
    except StoreUnavailable:
        raise
    except Exception as error:
        raise StoreUnavailable(
            f"cannot open store {connector.describe()}: {_one_line(error)}"
        ) from error


def _translate(connector: Connector, error: BaseException) -> BaseException:
    """Database trouble (disk full, locked, I/O) reaches callers as StoreUnavailable."""
    if isinstance(error, StoreUnavailable) or not connector.is_unavailable(error):
        return error
    wrapped = StoreUnavailable(f"store {connector.describe()} failed: {_one_line(error)}")
    wrapped.__cause__ = error
    return wrapped


def _close_quietly(connector: Connector, conn: Any) -> None:
    try:
        connector.close(conn)
    except Exception as error:  # noqa: BLE001 - the connection is broken anyway
        log.debug("closing a broken connection failed: %s", _one_line(error))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
