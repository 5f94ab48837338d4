"""The change feed behind the pages' live updates (server-sent events).

One feed per console process, however many browsers watch: it reads a tiny fingerprint of
the store (the newest row id of deliveries, attempts, failures and inbound messages, and the
count and newest update of active deliveries; each one index probe) whenever the store's own
wake-up mechanism says something was committed (LISTEN/NOTIFY on PostgreSQL, the
``data_version`` watch on SQLite), and at least every ``poll_seconds`` as a fallback. When the
fingerprint moved it bumps its version; each open event stream then tells its page, which
re-fetches its live region (htmx). Pages are told at most once per ``min_gap_seconds``, so a
busy worker does not make every browser re-render a hundred times a second.

The feed watches only while at least one page listens: a console nobody looks at costs the
store nothing. (On SQLite the ``data_version`` watch reads shared memory every millisecond
while it waits, about 5% of one core.) PostgreSQL notifications name the channel of the work;
the feed listens for the channels in the configuration, and the poll covers any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from typing import Any

from relaybox.errors import RelayboxError
from relaybox.store import Store, Tx
from relaybox.store.base import Unit, WakeSource

log = logging.getLogger("relaybox.console")


def change_marks() -> Unit[tuple[Any, ...]]:
    def unit(tx: Tx) -> tuple[Any, ...]:
        row = tx.fetch_one("console_change_marks") or {}
        return tuple(row.get(key) for key in sorted(row))

    return unit


class ChangeFeed:
    """``version`` grows whenever the store's fingerprint changed."""

    def __init__(
        self,
        store: Store,
        *,
        channels: Collection[str] = (),
        poll_seconds: float = 1.0,
        min_gap_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.channels = tuple(channels)
        self.listeners = 0
        self.poll_seconds = poll_seconds
        self.min_gap_seconds = min_gap_seconds
        self.version = 0
        self._marks: tuple[Any, ...] | None = None
        self._changed = asyncio.Event()  # replaced by a fresh one at every change
        self._wake = asyncio.Event()
        self._closed = False

    def wake(self) -> None:
        """Something may have changed (a wake-up from the store, or our own action)."""
        self._wake.set()

    def wake_threadsafe(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Watch until cancelled (with the store's wake-up source when it has one)."""
        source = self.store.connector.wake_source(self.channels, self.wake)
        watcher = None if source is None else asyncio.create_task(source.run())
        try:
            await self._watch(source)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _watch(self, source: WakeSource | None) -> None:
        while not self._closed:
            if self.listeners == 0:
                # Nobody watches: no reads at all until a page opens its event stream.
                if source is not None:
                    source.set_waiting(False)
                await self._wake.wait()
                self._wake.clear()
            if source is not None:
                source.set_waiting(True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                marks = await self.store.read(change_marks())
            except RelayboxError as error:
                log.warning("console change feed could not read the store: %s", error)
                continue
            if marks != self._marks:
                first = self._marks is None
                self._marks = marks
                if not first:
                    self._bump()
                    await asyncio.sleep(self.min_gap_seconds)

    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def listen(self) -> None:
        """A page opened its event stream."""
        self.listeners += 1
        self._wake.set()

    def unlisten(self) -> None:
        self.listeners = max(0, self.listeners - 1)

    async def wait(self, seen: int, timeout: float) -> int:
        """The version after ``seen`` (or ``seen`` again after ``timeout`` seconds)."""
        if self.version == seen and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.version

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._changed.set()

    @property
    def closed(self) -> bool:
        return self._closed
