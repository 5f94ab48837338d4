"""Read units over the workers registry: who is alive, and which channels have a worker."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from relaybox.store import Tx
from relaybox.store.base import Unit


@dataclass(frozen=True)
class WorkerInfo:
    """One row of ``workers``, with whether it counts as alive at the time it was read."""

    id: str
    host: str
    pid: int
    version: str
    channels: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen_at: float
    in_flight: int
    channel_state: dict[str, Any]
    services: dict[str, Any]
    metrics_url: str | None
    alive: bool
    seen_seconds_ago: float

    @classmethod
    def from_row(cls, row: dict[str, Any], now: float, dead_after: float) -> WorkerInfo:
        last_seen = float(row["last_seen_at"])
        ago = max(0.0, now - last_seen)
        return cls(
            id=row["id"],
            host=row["host"],
            pid=int(row["pid"]),
            version=row["version"],
            channels=tuple(_json(row["channels"], [])),
            concurrency=int(row["concurrency"]),
            started_at=float(row["started_at"]),
            last_seen_at=last_seen,
            in_flight=int(row["in_flight"]),
            channel_state=_json(row["channel_state"], {}),
            services=_json(row["services"], {}),
            metrics_url=row["metrics_url"],
            alive=ago <= dead_after,
            seen_seconds_ago=round(ago, 3),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "channels": list(self.channels),
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "last_seen_at": self.last_seen_at,
            "seen_seconds_ago": self.seen_seconds_ago,
            "in_flight": self.in_flight,
            "alive": self.alive,
            "metrics_url": self.metrics_url,
            "channel_state": self.channel_state,
            "services": self.services,
        }


def _json(text: Any, default: Any) -> Any:
    # Written by relaybox only; a row edited by hand into garbage shows as empty, not a crash.
    try:
        value = json.loads(text) if isinstance(text, str) else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def list_workers(dead_after: float, now: float | None = None) -> Unit[list[WorkerInfo]]:
    """Unit (read): every registered worker, oldest first, each marked alive or dead."""

    def unit(tx: Tx) -> list[WorkerInfo]:
        at = time.time() if now is None else now
        return [WorkerInfo.from_row(r, at, dead_after) for r in tx.fetch_all("list_workers")]

    return unit


@dataclass(frozen=True)
class QueueCount:
    channel: str
    status: str
    count: int
    oldest_created_at: float | None


def queue_by_channel() -> Unit[list[QueueCount]]:
    """Unit (read): active deliveries per channel and status, with the oldest enqueue time."""

    def unit(tx: Tx) -> list[QueueCount]:
        return [
            QueueCount(
                r["channel"],
                r["status"],
                int(r["n"]),
                None if r["oldest_created_at"] is None else float(r["oldest_created_at"]),
            )
            for r in tx.fetch_all("queue_by_channel")
        ]

    return unit
