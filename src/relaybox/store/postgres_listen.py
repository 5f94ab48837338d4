"""LISTEN/NOTIFY wake-ups on PostgreSQL: a new reply is claimed within milliseconds.

Enqueue, release-for-retry-now and the operator's requeue call
``pg_notify('relaybox_deliveries', <channel>)`` inside their transaction
(``store/sql/postgres/outbox.sql``); PostgreSQL delivers the notification when that transaction
commits, and drops it if it rolls back. This listener holds its own connection (the store's
writer connection sits inside a transaction most of the time, and notifications are only read
between transactions) and wakes the worker's claim loop when a notification names one of its
channels.

Notifications are a hint, never the source of truth: a listener that is reconnecting misses
them, so the worker keeps a slow safety-net poll, polls fast while the listener is down, and is
woken once after every (re)connect for whatever was enqueued while nobody listened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

import psycopg

from relaybox.store.postgres import connect_kwargs

log = logging.getLogger("relaybox.worker")

CHANNEL = "relaybox_deliveries"
_MAX_BACKOFF_SECONDS = 5.0


class Notifier:
    """Wake ``wake()`` whenever work may have appeared on one of ``channels``; run until cancelled.

    >>> notifier = Notifier(url, {"sms"}, worker.notify)     # doctest: +SKIP
    >>> task = asyncio.create_task(notifier.run())           # doctest: +SKIP
    """

    def __init__(self, url: str, channels: Collection[str], wake: Callable[[], None]) -> None:
        self.url = url
        self.channels = frozenset(channels)
        self._wake = wake
        self._listening = False
        self._was_listening = False
        self.reconnects = 0  # how many times the listener had to connect again

    @property
    def listening(self) -> bool:
        """True while a LISTEN is in place, i.e. while notifications can arrive."""
        return self._listening

    def set_waiting(self, waiting: bool) -> None:
        """Nothing to do: the server pushes notifications whether or not the worker waits."""

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                reason = "the server ended the notification stream"
            except (psycopg.Error, OSError) as error:
                reason = _one_line(error)
            # Back off only while connecting keeps failing; a listener that was up starts over.
            failures = 1 if self._was_listening else failures + 1
            self.reconnects += 1
            delay = min(_MAX_BACKOFF_SECONDS, 0.05 * 2**failures)
            log.warning("LISTEN connection lost or refused (%s); retrying in %.2fs", reason, delay)
            await asyncio.sleep(delay)

    async def _listen(self) -> None:
        self._was_listening = False
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, **connect_kwargs(self.url, "listen")
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self._listening = self._was_listening = True
            try:
                self._wake()  # anything enqueued while nobody was listening
                async for note in conn.notifies():
                    if note.payload in self.channels:
                        self._wake()
            finally:
                self._listening = False


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
