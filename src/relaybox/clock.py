"""The clock seam: where units, services and the task supervisor take their time from.

Production code uses :data:`SYSTEM` (wall time for stored timestamps, the event loop for
waiting). Tests pass a :class:`ManualClock` instead and *move* time with
:meth:`ManualClock.advance`: a deadline test then takes milliseconds and cannot be flaky,
because nothing waits for real time to pass.

    >>> clock = ManualClock(start=1_000.0)
    >>> clock.now()
    1000.0
    >>> clock.advance(30)      # wakes every waiter whose timeout has now passed
    >>> clock.now()
    1030.0
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Time as relaybox sees it."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch: what is stored in timestamps and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set (True) or ``timeout`` seconds passed (False)."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and the running event loop's timers."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))
            return True
        return event.is_set()


SYSTEM: Clock = SystemClock()


class ManualClock:
    """A clock that only moves when told to (tests).

    Waiters park on futures ordered by their wake time; :meth:`advance` resolves the ones now
    due. :meth:`sleepers` and :meth:`wait_for_sleepers` let a test wait until a service is
    parked before moving time, instead of guessing with a real sleep.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every waiter that is now due."""
        if seconds < 0:
            raise ValueError("a clock never moves backwards")
        self._now += seconds
        while self._heap and self._heap[0][0] <= self._now:
            _due, _n, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)

    def sleepers(self) -> int:
        """How many waiters are parked on this clock right now."""
        return sum(1 for _d, _n, f in self._heap if not f.done())

    async def wait_for_sleepers(self, count: int, *, real_timeout: float = 10.0) -> None:
        """Yield to the event loop until at least ``count`` waiters are parked."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + real_timeout
        while self.sleepers() < count:
            if loop.time() > give_up:
                raise TimeoutError(f"only {self.sleepers()} of {count} waiters parked")
            await asyncio.sleep(0.001)

    def _park(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            future.set_result(None)
            return future
        heapq.heappush(self._heap, (self._now + seconds, next(self._seq), future))
        return future

    async def sleep(self, seconds: float) -> None:
        future = self._park(seconds)
        try:
            await future
        finally:
            future.cancel()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        timer = self._park(timeout)
        waiter: asyncio.Future[None] = asyncio.ensure_future(_wait_event(event))
        try:
            await asyncio.wait((timer, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            waiter.cancel()
        return event.is_set()


async def _wait_event(event: asyncio.Event) -> None:
    await event.wait()
