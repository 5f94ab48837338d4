"""PostgreSQL driver (psycopg 3): one connection per store writer, ``synchronous_commit=on``.

Why psycopg 3 and one connection rather than asyncpg or a pool: see docs/postgres.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from relaybox.store.base import Params, Row, WakeSource
from relaybox.store.queries import load_queries, to_pyformat

# 57P01 admin shutdown / pg_terminate_backend, 57P02 crash shutdown, 57P03 cannot connect now.
_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})

# Notice a silently dead server (a machine gone, a network cut) in about half a minute
# instead of the kernel's default of hours. Any of these in the URL wins.
_CONNECT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def connect_kwargs(url: str, role: str) -> dict[str, Any]:
    """Connection settings for ``url``: our defaults, unless the URL sets them itself.

    ``application_name`` is ``relaybox-<role>-<pid>`` so an operator (or a test) finds a
    process's connections in ``pg_stat_activity``; the pid is also part of the worker id.
    """
    given = conninfo_to_dict(url)
    kwargs = {key: value for key, value in _CONNECT_DEFAULTS.items() if key not in given}
    if "application_name" not in given:
        kwargs["application_name"] = f"relaybox-{role}-{os.getpid()}"
    return kwargs


class PostgresTx:
    dialect = "postgres"
    network_round_trips = True

    def __init__(self, conn: psycopg.Connection[Any], queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    def execute(self, query: str, params: Params | None = None) -> int:
        return self._conn.execute(self._queries[query], params or {}).rowcount

    def execute_many(self, query: str, params: Sequence[Params]) -> int:
        with self._conn.cursor() as cursor:
            cursor.executemany(self._queries[query], params)
            return cursor.rowcount

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
    network_round_trips = True

    def __init__(self, url: str, *, role: str = "store", read_only: bool = False) -> None:
        self.url = url
        self.role = role
        self.read_only = read_only
        self._queries = load_queries("postgres", to_pyformat)

    def describe(self) -> str:
        return _redact(self.url)

    def connect(self) -> psycopg.Connection[Any]:
        if self.read_only:
            raise AssertionError("a read-only store has no writer connection")
        conn: psycopg.Connection[Any] = psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, **connect_kwargs(self.url, self.role)
        )
        conn.execute("SET synchronous_commit = on")
        return conn

    def connect_reader(self) -> psycopg.Connection[Any]:
        """A connection of its own for read units; every transaction on it is read-only."""
        conn: psycopg.Connection[Any] = psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, **connect_kwargs(self.url, "read")
        )
        conn.execute("SET default_transaction_read_only = on")
        return conn

    def begin_read(self, conn: psycopg.Connection[Any]) -> None:
        # One snapshot for the whole unit (a trace reads several tables that must agree).
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin(self, conn: psycopg.Connection[Any], *, write: bool) -> None:
        # Stated, not inherited from the server's default: the claim relies on each statement
        # taking a fresh snapshot (see claim_deliveries in sql/postgres/outbox.sql).
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")

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
        # OperationalError covers lost connections, disk full (53xxx), deadlocks and
        # serialization failures (40xxx), lock and statement timeouts, cancelled queries.
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)

    def close(self, conn: Any) -> None:
        conn.close()

    def wake_source(self, channels: Collection[str], wake: Callable[[], None]) -> WakeSource | None:
        """LISTEN/NOTIFY on a connection of its own (see ``store/postgres_listen.py``)."""
        from relaybox.store.postgres_listen import Notifier

        return Notifier(self.url, channels, wake)


def _redact(url: str) -> str:
    """Hide a password in a URL before it reaches a message or a log."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if ":" in credentials else url
