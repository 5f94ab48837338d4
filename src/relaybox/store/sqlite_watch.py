"""SQLite wake-ups: notice another connection's commit within about a millisecond.

SQLite has no LISTEN/NOTIFY, but ``PRAGMA data_version`` changes whenever another connection
commits a change to the database file; reading it touches only the WAL index in shared memory
(no lock, no disk). While the worker's claim loop waits for work, the watcher reads it every
millisecond and wakes the loop when it moved: an enqueue from another process is claimed within
a few milliseconds instead of at the next poll. While the loop is busy it does not read at all
(the loop is not waiting for anyone), and it takes its reference value when a wait ends, i.e.
before the claims that follow, so a commit racing with a claim is never missed. Like
notifications on PostgreSQL it is a hint; the worker still polls slowly as a safety net.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger("relaybox.worker")

INTERVAL = 0.001  # seconds between reads while the claim loop waits


class DataVersionWatcher:
    """Call ``wake()`` when another connection committed to the SQLite file at ``path``.

    >>> watcher = DataVersionWatcher("relaybox.db", worker.notify)   # doctest: +SKIP
    >>> task = asyncio.create_task(watcher.run())                    # doctest: +SKIP
    """

    def __init__(self, path: str, wake: Callable[[], None]) -> None:
        self.path = path
        self._wake = wake
        self._listening = False
        self._waiting = asyncio.Event()
        self._conn: sqlite3.Connection | None = None
        self._seen = -1

    @property
    def listening(self) -> bool:
        """True while the watcher reads the file, i.e. while wake-ups can arrive."""
        return self._listening

    def set_waiting(self, waiting: bool) -> None:
        if waiting:
            self._waiting.set()
            return
        self._waiting.clear()
        if self._conn is not None:
            # The reference point for the next wait: taken before the loop's next claim.
            self._seen = _data_version(self._conn)

    async def run(self) -> None:
        # Its own connection, used only from the event loop's thread.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            self._seen = _data_version(conn)
            self._conn = conn
            self._listening = True
            self._wake()  # anything committed before the watcher started
            while True:
                await self._waiting.wait()
                await asyncio.sleep(INTERVAL)
                if not self._waiting.is_set():
                    continue
                current = _data_version(conn)
                if current != self._seen:
                    self._seen = current
                    self._wake()
        except sqlite3.Error as error:
            log.warning("watching %s for commits failed (%s); polling instead", self.path, error)
        finally:
            self._listening = False
            self._conn = None
            conn.close()


def _data_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])
