"""Registry job: keep this worker's row in the ``workers`` table current.

Registers at start (so ``relaybox workers`` shows a worker as soon as it claims), refreshes
``last_seen_at``, the in-flight count and the channel state every ``heartbeat_seconds``, and
deregisters at a clean stop. The heartbeat is a supervised service (``worker/service.py``):
a store that is briefly unavailable costs a missed heartbeat (logged by the service), never
the worker. Each heartbeat also publishes the health of the worker's services.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata

from relaybox.clock import SYSTEM, Clock
from relaybox.errors import StoreUnavailable
from relaybox.store import Store
from relaybox.worker.service import Service
from relaybox.workers import transitions as wt
from relaybox.workers.transitions import WorkerRecord

log = logging.getLogger("relaybox.worker")


def relaybox_version() -> str:
    try:
        return metadata.version("relaybox")
    except metadata.PackageNotFoundError:
        return "unknown"


def describe_worker(
    worker_id: str, channels: list[str], concurrency: int, metrics_url: str | None
) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        version=relaybox_version(),
        channels=tuple(channels),
        concurrency=concurrency,
        started_at=time.time(),
        metrics_url=metrics_url,
    )


class RegistryJob:
    """Register, heartbeat every ``interval`` seconds, deregister: see the module docstring."""

    def __init__(
        self,
        store: Store,
        record: WorkerRecord,
        interval: float,
        in_flight: Callable[[], int],
        channel_state: Callable[[], dict[str, dict[str, object]]],
        services: Callable[[], dict[str, dict[str, object]]],
    ) -> None:
        self.store = store
        self.record = record
        self.interval = interval
        self._in_flight = in_flight
        self._channel_state = channel_state
        self._services = services

    def _current(self) -> WorkerRecord:
        return replace(
            self.record,
            in_flight=self._in_flight(),
            channel_state=self._channel_state(),
            services=self._services(),
        )

    async def register(self) -> None:
        try:
            await self.store.run(wt.register(self._current()))
        except StoreUnavailable as error:
            log.warning("could not register worker (store unavailable): %s", error)

    def service(self, clock: Clock = SYSTEM) -> Service:
        """The heartbeat as a supervised service (registration is done by :meth:`register`)."""
        return Service("registry", self.beat, every=self.interval, run_first=False, clock=clock)

    async def beat(self) -> None:
        """One heartbeat; raises if the store is unavailable (the service logs and retries)."""
        await self.store.run(wt.heartbeat(self._current()))

    async def deregister(self) -> None:
        try:
            await self.store.run(wt.deregister(self.record.id))
        except StoreUnavailable as error:
            log.warning(
                "could not deregister worker (store unavailable; its row ages out): %s", error
            )
