"""PostgreSQL driver (psycopg 3): one connection per store writer, ``synchronous_commit=on``."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from relaybox.store.base import Params, Row
from relaybox.store.queries import load_queries

_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})


class PostgresTx:
    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any], queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    def execute(self, query: str, params: Params | None = None) -> int:
        return self._conn.execute(self._queries[query], params or {}).rowcount

    def fetch_one(self, query: str, params: Params | None = None) -> Row | None:
        row: Row | None = self._conn.execute(self._queries[query], params or {}).fetchone()
        return row

    def fetch_all(self, query: str, params: Params | None = None) -> list[Row]:
        rows: list[Row] = self._conn.execute(self._queries[query], params or {}).fetchall()
        return rows

    def execute_script(self, sql: str) -> None:
        self._conn.execute(sql.encode("utf-8"))


class PostgresConnector:
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self._queries = load_queries("postgres")

    def describe(self) -> str:
        return _redact(self.url)

    def connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
        )
        conn.execute("SET synchronous_commit = on")
        return conn

    def begin(self, conn: psycopg.Connection[Any], *, write: bool) -> None:
        conn.execute("BEGIN")

    def commit(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("ROLLBACK")

    def make_tx(self, conn: psycopg.Connection[Any]) -> PostgresTx:
        return PostgresTx(conn, self._queries)

    def is_disconnect(self, error: BaseException) -> bool:
        if isinstance(error, psycopg.InterfaceError):
            return True
        if not isinstance(error, psycopg.OperationalError):
            return False
        # No SQLSTATE: the socket broke. 08xxx: connection exception. 57P0x: server shutdown.
        state = error.sqlstate
        return state is None or state.startswith("08") or state in _SHUTDOWN_STATES

    def is_unavailable(self, error: BaseException) -> bool:
        # OperationalError covers lost connections, disk full (53xxx), lock and statement timeouts.
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)

    def close(self, conn: Any) -> None:
        conn.close()


def _redact(url: str) -> str:
    """Hide a password in a URL before it reaches a message or a log."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if ":" in credentials else url
