"""Supervised background services: run every N seconds, restart with backoff, report health.

Every background job of a worker (lease heartbeat, expirer, pruner, wake-up listener, task
supervisor, ...) is a :class:`Service`. The base owns what each loop used to do by hand, and
what a bare ``create_task`` loop got wrong: an exception in one pass used to end the loop
silently until shutdown. Here it is logged (one line, with the service's name) and the service
runs again after a backoff that doubles per consecutive failure, up to ``max_backoff``.

Two shapes:

* periodic (``every`` seconds): ``body()`` does one pass and returns;
* continuous (``every=None``): ``body()`` runs until cancelled (a listener); if it returns or
  raises, it is started again after the backoff.

Time comes from a :class:`~relaybox.clock.Clock`, so tests move time instead of sleeping.
:meth:`Service.health` is what ``relaybox workers``/metrics report (issue 10 reads it).

    >>> svc = Service("expirer", expire_once, every=5.0)          # doctest: +SKIP
    >>> group = ServiceGroup([svc]); group.start(stop_event)     # doctest: +SKIP
    >>> await group.wait()                                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from relaybox.clock import SYSTEM, Clock

log = logging.getLogger("relaybox.worker")

Body = Callable[[], Awaitable[None]]


class ServiceState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"  # a continuous body is running, or a periodic one waits for its next pass
    BACKING_OFF = "backing_off"  # the last pass failed; waiting before the restart
    STOPPED = "stopped"


@dataclass(frozen=True)
class ServiceHealth:
    """A snapshot of one service, for health checks and metrics."""

    name: str
    state: ServiceState
    runs: int  # passes (or starts, for a continuous service) begun
    failures: int  # passes that raised, in total
    consecutive_failures: int
    last_run_at: float | None  # clock time the last pass began
    last_ok_at: float | None  # clock time the last pass ended without error
    last_error: str | None

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0 and self.state != ServiceState.STOPPED


class Service:
    """One supervised loop (see the module docstring)."""

    def __init__(
        self,
        name: str,
        body: Body,
        *,
        every: float | Callable[[], float] | None,
        run_first: bool = True,
        clock: Clock = SYSTEM,
        min_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        if isinstance(every, int | float) and every <= 0:
            raise ValueError(f"service {name}: interval must be positive, got {every}")
        self.name = name
        self._body = body
        self._every = every
        self._run_first = run_first
        self.clock = clock
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._state = ServiceState.STARTING
        self._runs = 0
        self._failures = 0
        self._consecutive = 0
        self._last_run_at: float | None = None
        self._last_ok_at: float | None = None
        self._last_error: str | None = None
        self.passed = asyncio.Event()  # set after every pass that ended (tests wait on it)

    def interval(self) -> float | None:
        every = self._every
        return every() if callable(every) else every

    def health(self) -> ServiceHealth:
        return ServiceHealth(
            self.name,
            self._state,
            self._runs,
            self._failures,
            self._consecutive,
            self._last_run_at,
            self._last_ok_at,
            self._last_error,
        )

    def backoff(self) -> float:
        """The wait before the next restart after ``consecutive_failures`` failures in a row."""
        if self._consecutive == 0:
            return 0.0
        cap = self._max_backoff
        every = self.interval()
        if every is not None:
            cap = min(cap, every)  # a failing heartbeat must still try once per interval
        return float(min(cap, self._min_backoff * 2 ** (self._consecutive - 1)))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or the task is cancelled)."""
        try:
            first_wait = None if self._run_first else self.interval()
            if first_wait is not None and await self.clock.wait(stop, first_wait):
                return
            while not stop.is_set():
                await self._one_pass()
                if self._consecutive:
                    self._state = ServiceState.BACKING_OFF
                    wait = self.backoff()
                else:
                    self._state = ServiceState.RUNNING
                    wait = self.interval() or 0.0
                if await self.clock.wait(stop, wait):
                    return
        finally:
            self._state = ServiceState.STOPPED

    async def _one_pass(self) -> None:
        self._runs += 1
        started = self._last_run_at = self.clock.now()
        if self._every is None:
            self._state = ServiceState.RUNNING
        try:
            await self._body()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the point of the base: log and restart
            if self._every is None and self.clock.now() - started > self._max_backoff:
                self._consecutive = 0  # a listener that ran for a while starts its backoff over
            self._failures += 1
            self._consecutive += 1
            self._last_error = f"{type(error).__name__}: {_one_line(error)}"
            log.warning(
                "service %s failed (%s); restarting in %.2fs",
                self.name,
                self._last_error,
                self.backoff(),
            )
        else:
            if self._every is None:
                # A continuous body is not meant to return: treat it like a failure.
                if self.clock.now() - started > self._max_backoff:
                    self._consecutive = 0
                self._consecutive += 1
                self._last_error = "returned"
                log.warning("service %s ended; restarting in %.2fs", self.name, self.backoff())
            else:
                self._consecutive = 0
                self._last_ok_at = self.clock.now()
        finally:
            self.passed.set()


class ServiceGroup:
    """The services of one worker: start them together, stop them together, report health."""

    def __init__(self, services: Iterable[Service] = ()) -> None:
        self.services: list[Service] = list(services)
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, service: Service) -> Service:
        if any(s.name == service.name for s in self.services):
            raise ValueError(f"a service named {service.name} is already registered")
        self.services.append(service)
        return service

    def start(self, stop: asyncio.Event) -> None:
        self._tasks = [
            asyncio.create_task(s.run(stop), name=f"relaybox-{s.name}") for s in self.services
        ]

    def health(self) -> list[ServiceHealth]:
        return [s.health() for s in self.services]

    def get(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    async def close(self, *, cancel: Iterable[str] = ()) -> None:
        """Wait for every service to notice the stop event; cancel the named ones first.

        Continuous services (listeners) do not watch the stop event, so they are named here.
        """
        names = set(cancel)
        for service, task in zip(self.services, self._tasks, strict=True):
            if service.name in names or service.interval() is None:
                task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for service, result in zip(self.services, results, strict=True):
            if isinstance(result, Exception):
                log.warning("service %s ended with an error: %s", service.name, result)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
