"""Every write to the ``workers`` table: register, heartbeat, deregister, forget the dead.

A worker's row is its own: only that worker writes it, except :func:`forget_dead`, which
deletes rows nobody has refreshed for an hour (their workers are gone).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from relaybox.store import Tx
from relaybox.store.base import Unit

FORGET_AFTER_SECONDS = 3600.0  # a dead worker's row is deleted this long after it was last seen


@dataclass(frozen=True)
class WorkerRecord:
    """What a worker says about itself at every heartbeat."""

    id: str
    host: str
    pid: int
    version: str
    channels: tuple[str, ...]
    concurrency: int
    started_at: float
    metrics_url: str | None = None
    in_flight: int = 0
    channel_state: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)  # name -> state, failures, last error

    def params(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "channels": json.dumps(list(self.channels)),
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "now": now,
            "in_flight": self.in_flight,
            "channel_state": json.dumps(self.channel_state, sort_keys=True),
            "services": json.dumps(self.services, sort_keys=True),
            "metrics_url": self.metrics_url,
        }


def register(record: WorkerRecord, now: float | None = None) -> Unit[None]:
    """Unit: insert (or refresh) this worker's row."""

    def unit(tx: Tx) -> None:
        tx.execute("register_worker", record.params(time.time() if now is None else now))

    return unit


def heartbeat(record: WorkerRecord, now: float | None = None) -> Unit[None]:
    """Unit: refresh ``last_seen_at``, in-flight count and channel state.

    A row that is gone (deleted as dead after a long stall) is inserted again: the worker is
    evidently alive.
    """

    def unit(tx: Tx) -> None:
        at = time.time() if now is None else now
        params = record.params(at)
        if tx.execute("heartbeat_worker", params) == 0:
            tx.execute("register_worker", params)
        tx.execute("forget_dead_workers", {"before": at - FORGET_AFTER_SECONDS})

    return unit


def deregister(worker_id: str) -> Unit[bool]:
    """Unit: delete this worker's row (a clean stop); True if there was one."""

    def unit(tx: Tx) -> bool:
        return tx.execute("deregister_worker", {"id": worker_id}) > 0

    return unit
