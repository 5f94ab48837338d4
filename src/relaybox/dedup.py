"""Receiver-side deduplication, for people who own the far end of a webhook.

:class:`Deduplicator` is what a webhook receiver needs to honour ``Idempotency-Key`` (and so
to be configured with ``dedup = true``): a durable record of the keys it has already handled,
safe to share between threads and between processes on one host.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TypeAlias

__all__ = ["Deduplicator", "MessageIdFactory", "new_message_id"]

MessageIdFactory: TypeAlias = Callable[[], str]

_TABLE = "relaybox_idempotency_keys"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} ("
    " key TEXT PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " first_seen REAL NOT NULL"
    ") WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_first_seen ON {_TABLE} (first_seen)",
)


def new_message_id() -> str:
    """A fresh random message id (``rx-`` and 20 hex digits)."""
    return f"rx-{uuid.uuid4().hex[:20]}"


class Deduplicator:
    """A durable record of seen ``Idempotency-Key`` values, backed by SQLite.

    ``path`` is a SQLite file (created if missing) or ``":memory:"``. One instance may be used
    from many threads; several processes may each open their own instance on the same file
    (do not share one instance across ``fork``). Claims are atomic: of any number of concurrent
    claims of one key, exactly one is the first.

    Usage in a web handler (any framework)::

        dedup = Deduplicator("/var/lib/myapp/idempotency.db")

        def handle_send(request):
            key = request.headers["Idempotency-Key"]
            first, message_id = dedup.claim(key, lambda: show_to_user(request.json()))
            if not first:
                return 409, {"message_id": message_id}  # already shown: do not show again
            return 200, {"message_id": message_id}

    Here ``show_to_user`` would run for duplicates too, since the factory is called before the
    atomic insert. To show a message only once, claim with a fresh id first and show it after::

            first, message_id = dedup.claim(key, lambda: str(uuid.uuid4()))
            if first:
                show_to_user(request.json(), message_id)

    (If showing can fail, a crash between the claim and the showing loses that message; keep
    the claim and the showing in one database transaction if that matters.) Call
    :meth:`forget_older_than` now and then to bound the file: keep keys for longer than the
    sender may resend a part (relaybox's ``max_age_seconds``).
    """

    def __init__(
        self, path: str | os.PathLike[str] = ":memory:", *, busy_timeout_seconds: float = 30.0
    ) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout_seconds,
            isolation_level=None,  # autocommit; transactions are explicit
            check_same_thread=False,
        )
        try:
            if self.path != ":memory:" and not self.path.startswith("file::memory:"):
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except BaseException:
            self._conn.close()
            raise

    def claim(
        self, key: str, message_id_factory: MessageIdFactory | None = None
    ) -> tuple[bool, str]:
        """Record ``key``; return ``(first_time, message_id)``.

        The first claim of a key stores ``message_id_factory()`` (a random id if no factory is
        given) and returns ``(True, that id)``. Every later claim returns ``(False, the id stored
        the first time)``. The factory is called once per claim, before the atomic insert, so it
        should be cheap and free of side effects.
        """
        candidate = message_id_factory() if message_id_factory is not None else new_message_id()
        if not isinstance(candidate, str):
            raise TypeError(f"message_id_factory must return str, got {type(candidate).__name__}")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    f"INSERT INTO {_TABLE} (key, message_id, first_seen) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO NOTHING",
                    (key, candidate, time.time()),
                )
                if cursor.rowcount == 1:
                    first_time, message_id = True, candidate
                else:
                    row = self._conn.execute(
                        f"SELECT message_id FROM {_TABLE} WHERE key = ?", (key,)
                    ).fetchone()
                    first_time, message_id = False, str(row[0])
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return first_time, message_id

    def get(self, key: str) -> str | None:
        """The message id recorded for ``key``, or ``None`` if it was never claimed."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT message_id FROM {_TABLE} WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def forget_older_than(self, seconds: float) -> int:
        """Drop keys first claimed more than ``seconds`` ago; return how many were dropped."""
        cutoff = time.time() - seconds
        with self._lock:
            cursor = self._conn.execute(f"DELETE FROM {_TABLE} WHERE first_seen < ?", (cutoff,))
        return cursor.rowcount

    def __len__(self) -> int:
        with self._lock:
            row = self._conn.execute(f"SELECT count(*) FROM {_TABLE}").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Deduplicator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
