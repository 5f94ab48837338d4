"""SQLite driver: WAL mode, ``BEGIN IMMEDIATE`` for writes, safe across processes on one machine."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from relaybox.errors import NotARelayboxStore, StoreNotFound
from relaybox.store.base import Params, Row, WakeSource
from relaybox.store.queries import load_queries

# synchronous=FULL: a committed transaction (an acknowledged enqueue, an advanced cursor)
# survives power loss. busy_timeout lets several worker processes share one file.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


class SqliteTx:
    dialect = "sqlite"
    network_round_trips = False

    def __init__(self, conn: sqlite3.Connection, queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    def execute(self, query: str, params: Params | None = None) -> int:
        return self._conn.execute(self._queries[query], _adapt(params)).rowcount

    def execute_many(self, query: str, params: Sequence[Params]) -> int:
        # Scalar parameters only (no list -> JSON adaptation): this is the per-part hot path.
        return self._conn.executemany(self._queries[query], params).rowcount

    def fetch_one(self, query: str, params: Params | None = None) -> Row | None:
        row = self._conn.execute(self._queries[query], _adapt(params)).fetchone()
        return dict(row) if row is not None else None

    def fetch_all(self, query: str, params: Params | None = None) -> list[Row]:
        return [dict(row) for row in self._conn.execute(self._queries[query], _adapt(params))]

    def execute_script(self, sql: str) -> None:
        # executescript() would COMMIT first; run statement by statement instead.
        for statement in _split_statements(sql):
            self._conn.execute(statement)


class SqliteConnector:
    dialect = "sqlite"
    network_round_trips = False

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._queries = load_queries("sqlite")

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def connect(self) -> sqlite3.Connection:
        if self.read_only:
            raise AssertionError("a read-only store has no writer connection")
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise FileNotFoundError(f"directory {parent} does not exist")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        _set_pragmas(conn)
        return conn

    def connect_reader(self) -> sqlite3.Connection | None:
        """A second connection: in WAL mode it reads while the writer writes.

        Read-only stores open the file with ``mode=ro`` (SQLite then cannot create or change
        it), and only on a read-only filesystem (where ``mode=ro`` cannot set up WAL's shared
        memory) with ``immutable=1``, which promises SQLite that nobody writes the file.
        """
        if self.path == ":memory:":
            if self.read_only:
                raise StoreNotFound("no relaybox database in an empty in-memory SQLite store")
            return None  # an in-memory database exists only on the writer's connection
        if not self.read_only:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            return _reader_setup(conn)
        path = Path(self.path).expanduser().resolve()
        if not path.is_file():
            raise StoreNotFound(
                f"no relaybox database at {path} (check --db; `relaybox migrate` creates one)"
            )
        try:
            return _open_probed(path, "mode=ro")
        except sqlite3.OperationalError as error:
            # A read-only filesystem: the WAL index cannot be set up next to the file.
            if "unable to open" not in str(error) and "readonly" not in str(error):
                raise
            first = error
        except sqlite3.DatabaseError as error:
            raise NotARelayboxStore(
                f"not a relaybox database: {path} ({error}); it was left untouched"
            ) from error
        try:
            return _open_probed(path, "immutable=1")
        except sqlite3.DatabaseError as error:
            raise NotARelayboxStore(
                f"not a relaybox database: {path} ({first}; {error}); it was left untouched"
            ) from error

    def begin(self, conn: sqlite3.Connection, *, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def begin_read(self, conn: sqlite3.Connection) -> None:
        # A deferred transaction: the snapshot is taken by its first read, no lock is held.
        conn.execute("BEGIN")

    def commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def make_tx(self, conn: sqlite3.Connection) -> SqliteTx:
        return SqliteTx(conn, self._queries)

    def is_disconnect(self, error: BaseException) -> bool:
        # A local file has no connection to lose; I/O errors surface as OperationalError.
        return isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error)

    def is_unavailable(self, error: BaseException) -> bool:
        # "database or disk is full", "database is locked", "disk I/O error", ...
        return isinstance(error, sqlite3.OperationalError) or self.is_disconnect(error)

    def close(self, conn: Any) -> None:
        conn.close()

    def wake_source(self, channels: Collection[str], wake: Callable[[], None]) -> WakeSource | None:
        """A ``PRAGMA data_version`` watcher; none for an in-memory database (one process)."""
        from relaybox.store.sqlite_watch import DataVersionWatcher

        if self.path == ":memory:":
            return None
        return DataVersionWatcher(self.path, wake)


def _open_probed(path: Path, flags: str) -> sqlite3.Connection:
    """Open ``path`` read-only with URI ``flags`` and read its catalogue once.

    The read is what touches the file (SQLite opens lazily): a file that is not a database
    fails here with :class:`sqlite3.DatabaseError`, a WAL file on a read-only filesystem
    under ``mode=ro`` with :class:`sqlite3.OperationalError`.
    """
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?{flags}",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
    )
    try:
        _reader_setup(conn)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


_LOCKED_AT_OPEN_RETRY_SECONDS = 30.0


def _set_pragmas(conn: sqlite3.Connection) -> None:
    """Apply PRAGMAS, waiting out a lock another process holds while it sets up a new file.

    Switching a brand-new file to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once (without the busy handler) while another process is doing the same or
    migrating: two workers started together on a fresh store must both come up.
    """
    deadline = time.monotonic() + _LOCKED_AT_OPEN_RETRY_SECONDS
    delay = 0.005
    for pragma in PRAGMAS:
        while True:
            try:
                conn.execute(pragma)
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)


def _reader_setup(conn: sqlite3.Connection) -> sqlite3.Connection:
    # No journal_mode pragma here: setting it writes the file header. query_only makes any
    # write a read unit attempts fail instead of happening.
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA query_only=ON")
    return conn


def _adapt(params: Params | None) -> dict[str, Any]:
    """List parameters become JSON text, read in SQL with ``json_each(:name)``.

    (PostgreSQL receives the same lists as arrays, read with ``= ANY(:name)``.)
    """
    if not params:
        return {}
    return {
        key: json.dumps(value) if isinstance(value, list | tuple) else value
        for key, value in params.items()
    }


def _split_statements(sql: str) -> list[str]:
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
