"""SQLite wake-ups: notice another connection's commit within a millisecond or two.

SQLite has no LISTEN/NOTIFY, but ``PRAGMA data_version`` changes whenever another connection
commits a change to the database file; reading it touches only the WAL index in shared memory
(no lock, no disk). The watcher reads it every millisecond while the store is busy, every five
once it has been quiet for a second, and wakes the worker's claim loop when it moved: an
enqueue from another process is claimed within a few milliseconds instead of at the next poll.
Like notifications on PostgreSQL it is a hint; the worker still polls slowly as a safety net.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable

log = logging.getLogger("relaybox.worker")

BUSY_INTERVAL = 0.001  # seconds between reads while the store changed in the last second
IDLE_INTERVAL = 0.005  # and once it has been quiet for a second (p99 wake-up <= this)
QUIET_AFTER = 1.0


class DataVersionWatcher:
    """Call ``wake()`` whenever another connection committed to the SQLite file at ``path``.

    >>> watcher = DataVersionWatcher("relaybox.db", worker.notify)   # doctest: +SKIP
    >>> task = asyncio.create_task(watcher.run())                    # doctest: +SKIP
    """

    def __init__(self, path: str, wake: Callable[[], None]) -> None:
        self.path = path
        self._wake = wake
        self._listening = False

    @property
    def listening(self) -> bool:
        """True while the watcher reads the file, i.e. while wake-ups can arrive."""
        return self._listening

    async def run(self) -> None:
        # Its own connection, used only from this task (the event loop's thread).
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            version = _data_version(conn)
            self._listening = True
            self._wake()  # anything committed before the watcher started
            changed_at = time.monotonic()
            while True:
                quiet = time.monotonic() - changed_at > QUIET_AFTER
                await asyncio.sleep(IDLE_INTERVAL if quiet else BUSY_INTERVAL)
                current = _data_version(conn)
                if current != version:
                    version, changed_at = current, time.monotonic()
                    self._wake()
        except sqlite3.Error as error:
            log.warning("watching %s for commits failed (%s); polling instead", self.path, error)
        finally:
            self._listening = False
            conn.close()


def _data_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])
