"""SQLite driver: WAL mode, ``BEGIN IMMEDIATE`` for writes, safe across processes on one machine."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relaybox.store.base import Params, Row
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

    def __init__(self, path: str) -> None:
        self.path = path
        self._queries = load_queries("sqlite")

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise FileNotFoundError(f"directory {parent} does not exist")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        for pragma in PRAGMAS:
            conn.execute(pragma)
        return conn

    def begin(self, conn: sqlite3.Connection, *, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

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
