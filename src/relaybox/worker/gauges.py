"""Gauges job: read queue depth, oldest queued age, live workers and paused channels.

A supervised service (``worker/service.py``) that runs every ``[worker]
metrics_refresh_seconds`` while ``/metrics`` is served, reads through the store's read path
(``store.read``, not queued behind the writer), and hands the numbers to
:class:`~relaybox.observability.metrics.StoreGauges`, which a scrape only reads from memory.
One query pair per refresh whatever the scrape rate.
"""

from __future__ import annotations

import time

from relaybox.clock import SYSTEM, Clock
from relaybox.observability.metrics import GaugeSnapshot, StoreGauges
from relaybox.store import Store, Tx
from relaybox.store.base import Unit
from relaybox.worker.service import Service
from relaybox.workers.inspect import list_workers, queue_by_channel


def gauge_snapshot(dead_after: float, now: float | None = None) -> Unit[GaugeSnapshot]:
    """Unit (read): the numbers behind the store gauges."""

    def unit(tx: Tx) -> GaugeSnapshot:
        at = time.time() if now is None else now
        snapshot = GaugeSnapshot(refreshed_at=at)
        for row in queue_by_channel()(tx):
            snapshot.queue[(row.channel, row.status)] = row.count
            if row.oldest_created_at is not None:
                age = max(0.0, at - row.oldest_created_at)
                snapshot.oldest_age[row.channel] = max(age, snapshot.oldest_age.get(row.channel, 0))
        for worker in list_workers(dead_after, at)(tx):
            if not worker.alive:
                continue
            snapshot.live_workers += 1
            for channel in worker.channels:
                snapshot.paused.setdefault(channel, False)
            for channel, state in worker.channel_state.items():
                until = state.get("paused_until") if isinstance(state, dict) else None
                if isinstance(until, int | float) and until > at:
                    snapshot.paused[channel] = True
        return snapshot

    return unit


def gauges_service(
    store: Store, gauges: StoreGauges, interval: float, dead_after: float, clock: Clock = SYSTEM
) -> Service:
    async def body() -> None:
        gauges.update(await store.read(gauge_snapshot(dead_after, clock.now())))

    return Service("metrics_gauges", body, every=interval, clock=clock)
