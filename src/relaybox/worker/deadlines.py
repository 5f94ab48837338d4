"""Send timeouts for many concurrent sends with one timer, not one per send.

``asyncio.timeout`` schedules a ``TimerHandle`` on entry and cancels it on exit: with a
thousand deliveries in flight and instant sends that was about a fifth of a busy worker's
event-loop time (py-spy, benchmarks/throughput.py). :class:`SendDeadlines` keeps each waiting
send's deadline in a dict and checks them from a single timer every ``tick`` seconds while any
send waits, so a send bounded by ``seconds`` times out after between ``seconds`` and
``seconds + tick``.

Semantics follow ``asyncio.timeout``: the waiting task is cancelled and the block raises
:class:`TimeoutError`; a cancellation that did not come from the deadline (shutdown) still
propagates as :class:`asyncio.CancelledError`, even if the deadline passed too.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

DEFAULT_TICK_SECONDS = 0.05


class SendDeadlines:
    """Deadlines of the sends of one event loop (a worker's)."""

    def __init__(self, tick: float = DEFAULT_TICK_SECONDS) -> None:
        if tick <= 0:
            raise ValueError("tick must be greater than 0")
        self.tick = tick
        self._waiting: dict[asyncio.Task[Any], float] = {}  # task -> deadline (loop time)
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def within(self, seconds: float, task: asyncio.Task[Any] | None = None) -> _Bound:
        """``async with deadlines.within(5): await send()``: TimeoutError after ~5 s.

        ``task``: the task running the block, if the caller has it at hand (saves looking it
        up; it must be the current task)."""
        return _Bound(self, seconds, task)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _enter(self, seconds: float, task: asyncio.Task[Any] | None) -> asyncio.Task[Any]:
        if task is None:
            task = asyncio.current_task()
        if task is None:
            raise RuntimeError("SendDeadlines.within() must be used inside a task")
        loop = task.get_loop()
        self._waiting[task] = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._check, loop)
        return task

    def _exit(self, task: asyncio.Task[Any], exc_type: type[BaseException] | None) -> bool:
        """True if the block ended because its deadline cancelled it."""
        self._waiting.pop(task, None)
        if task not in self._expired:
            return False
        self._expired.discard(task)
        # Ours only if no other cancellation is pending (asyncio.timeout does the same).
        return task.uncancel() == 0 and exc_type is asyncio.CancelledError

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        due = [task for task, deadline in self._waiting.items() if deadline <= now]
        for task in due:
            del self._waiting[task]
            self._expired.add(task)
            task.cancel()
        self._timer = loop.call_later(self.tick, self._check, loop) if self._waiting else None


class _Bound:
    __slots__ = ("_deadlines", "_seconds", "_task")

    def __init__(
        self, deadlines: SendDeadlines, seconds: float, task: asyncio.Task[Any] | None
    ) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._task = task

    async def __aenter__(self) -> None:
        self._task = self._deadlines._enter(self._seconds, self._task)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        if self._deadlines._exit(self._task, exc_type):
            raise TimeoutError from exc
