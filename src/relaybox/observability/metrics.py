"""Prometheus metrics: a listener that counts the worker's decisions, plus gauges from the store.

``relaybox worker --metrics-port N`` serves them at ``http://<host>:N/metrics``. Every name has
the ``relaybox_`` prefix. Labels are bounded: ``channel`` (from relaybox.toml), ``outcome`` and
``status`` (fixed vocabularies), ``burned`` (true/false) — never a thread, user, delivery or
worker id. docs/observability.md lists every metric.

The store gauges (queue depth by channel and status, oldest queued age, live workers, paused
channels) are read by a periodic job (:class:`StoreGauges` via ``worker/gauges.py``), not by
the scrape: a scrape serves the last snapshot, so scraping often costs the store nothing. The
HTTP side is ``metrics_http.py`` (on the worker's event loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from relaybox.models import Delivery, Part
from relaybox.observability.events import Listener

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class MetricsListener(Listener):
    """Counters and histograms of the worker's decisions, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.claims = Counter(
            "relaybox_claims", "Deliveries claimed by this worker.", ["channel"], registry=r
        )
        self.parts_sent = Counter(
            "relaybox_parts_sent",
            "Parts acknowledged by the transport, by outcome (surfaced, duplicate,"
            " reconciled_surfaced, reconciled_duplicate).",
            ["channel", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "relaybox_send_attempts",
            "Sends handed to a transport, by outcome (acknowledged ones and every failure).",
            ["channel", "outcome"],
            registry=r,
        )
        self.send_duration = Histogram(
            "relaybox_send_duration_seconds",
            "Time a transport took to answer one send.",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.surfaced_latency = Histogram(
            "relaybox_enqueue_to_surfaced_seconds",
            "From enqueue to the transport acknowledging a part.",
            ["channel"],
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "relaybox_retries",
            "Deliveries sent back to the queue to retry; burned=false for receiver outages.",
            ["channel", "burned"],
            registry=r,
        )
        self.pauses = Counter(
            "relaybox_pauses", "Channel pauses (rate limit, 503 Retry-After).", ["channel"],
            registry=r,
        )  # fmt: skip
        self.parked_total = Counter(
            "relaybox_parked", "Deliveries parked as unknown.", ["channel"], registry=r
        )
        self.gave_up_total = Counter(
            "relaybox_gave_up", "Deliveries that ended failed.", ["channel"], registry=r
        )
        self.expired_total = Counter(
            "relaybox_expired", "Deliveries expired by this worker's runner.", ["channel"],
            registry=r,
        )  # fmt: skip
        self.lease_lost_total = Counter(
            "relaybox_lease_losses", "Leases this worker lost.", ["channel"], registry=r
        )
        self.released_total = Counter(
            "relaybox_released", "Deliveries given back unsent (shutdown, worker error).",
            ["channel"], registry=r,
        )  # fmt: skip
        self.delivered_total = Counter(
            "relaybox_delivered", "Deliveries fully acknowledged.", ["channel"], registry=r
        )
        self.ack_batch_size = Histogram(
            "relaybox_ack_batch_size",
            "Acknowledged parts recorded per group commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_group_commit_units = Histogram(
            "relaybox_store_group_commit_units",
            "Units of work committed together by the store's writer, per write commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.audit_fallbacks = Counter(
            "relaybox_audit_fallbacks",
            "Failure records written to the log because the store could not take them.",
            registry=r,
        )
        self.in_flight = Gauge(
            "relaybox_in_flight", "Deliveries this worker holds right now.", registry=r
        )

        # The per-part path looks its labelled children up in plain dicts: ``.labels()`` takes
        # a lock and builds tuples on every call, several times per part.
        self._per_part: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def _part_children(self, channel: str, outcome: str) -> tuple[Any, Any, Any, Any]:
        key = (channel, outcome)
        children = self._per_part.get(key)
        if children is None:
            children = self._per_part[key] = (
                self.parts_sent.labels(channel, outcome),
                self.attempts.labels(channel, outcome),
                self.send_duration.labels(channel),
                self.surfaced_latency.labels(channel),
            )
        return children

    def claimed(self, d: Delivery) -> None:
        self.claims.labels(d.channel).inc()
        self.in_flight.inc()

    def run_ended(self, d: Delivery) -> None:
        self.in_flight.dec()

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        sent, attempts, duration, surfaced = self._part_children(d.channel, outcome)
        sent.inc()
        attempts.inc()
        duration.observe(latency)
        surfaced.observe(max(0.0, time.time() - d.created_at))

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        self.attempts.labels(d.channel, outcome).inc()
        self.send_duration.labels(d.channel).observe(latency)

    def retry_scheduled(
        self, d: Delivery, part: Part | None, delay: float, reason: str, *, burned: bool
    ) -> None:
        self.retries.labels(d.channel, "true" if burned else "false").inc()

    def paused(self, d: Delivery, part: Part, until: float, reason: str) -> None:
        self.pauses.labels(d.channel).inc()

    def parked(self, d: Delivery, part: Part, reason: str) -> None:
        self.parked_total.labels(d.channel).inc()

    def expired(self, d: Delivery, part: Part | None, reason: str) -> None:
        self.expired_total.labels(d.channel).inc()

    def gave_up(self, d: Delivery, part: Part, reason: str) -> None:
        self.gave_up_total.labels(d.channel).inc()

    def lease_lost(self, d: Delivery) -> None:
        self.lease_lost_total.labels(d.channel).inc()

    def released(self, d: Delivery, reason: str) -> None:
        self.released_total.labels(d.channel).inc()

    def delivered(self, d: Delivery) -> None:
        self.delivered_total.labels(d.channel).inc()

    def ack_batch(self, size: int) -> None:
        self.ack_batch_size.observe(size)

    def audit_fallback(self) -> None:
        self.audit_fallbacks.inc()

    def store_batch(self, units: int) -> None:
        """A store batch listener (``Store.add_batch_listener``): one group commit's size."""
        self.store_group_commit_units.observe(units)


@dataclass
class GaugeSnapshot:
    """What the store said at the last refresh."""

    queue: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, status) -> n
    oldest_age: dict[str, float] = field(default_factory=dict)  # channel -> seconds
    live_workers: int = 0
    paused: dict[str, bool] = field(default_factory=dict)  # channel -> paused by any worker
    refreshed_at: float | None = None


class StoreGauges(Collector):
    """Serves the latest :class:`GaugeSnapshot` on every scrape (no store access here)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = GaugeSnapshot()

    def update(self, snapshot: GaugeSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            s = self._snapshot
        return list(_families(s))

    def describe(self) -> Iterable[Metric]:
        return list(_families(GaugeSnapshot()))


def _families(s: GaugeSnapshot) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "relaybox_queue_depth",
        "Active deliveries in the store, by channel and status (queued, sending).",
        labels=["channel", "status"],
    )
    for (channel, status), n in sorted(s.queue.items()):
        depth.add_metric([channel, status], n)
    yield depth
    oldest = GaugeMetricFamily(
        "relaybox_oldest_queued_age_seconds",
        "Age of the oldest queued or sending delivery, by channel.",
        labels=["channel"],
    )
    for channel, age in sorted(s.oldest_age.items()):
        oldest.add_metric([channel], age)
    yield oldest
    yield GaugeMetricFamily(
        "relaybox_live_workers",
        "Workers whose registry heartbeat is recent (all processes on this store).",
        value=s.live_workers,
    )
    paused = GaugeMetricFamily(
        "relaybox_channel_paused",
        "1 while any live worker reports the channel paused (rate limit / retry-after).",
        labels=["channel"],
    )
    for channel, flag in sorted(s.paused.items()):
        paused.add_metric([channel], 1.0 if flag else 0.0)
    yield paused
    yield GaugeMetricFamily(
        "relaybox_paused_channels",
        "Channels paused right now, by any live worker.",
        value=sum(1 for flag in s.paused.values() if flag),
    )
    yield GaugeMetricFamily(
        "relaybox_store_gauges_refreshed_timestamp_seconds",
        "When the store gauges above were last read (Unix time; 0 before the first read).",
        value=s.refreshed_at or 0.0,
    )


class ServiceCollector(Collector):
    """The health of the worker's supervised services (``worker/service.py``), read at scrape.

    ``health`` returns objects with ``name``, ``healthy``, ``failures`` and
    ``consecutive_failures`` (:class:`~relaybox.worker.service.ServiceHealth`).
    """

    def __init__(self, health: Callable[[], Iterable[Any]]) -> None:
        self._health = health

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "relaybox_service_up",
            "1 while a worker's background service (heartbeat, expirer, ...) runs without errors.",
            labels=["service"],
        )
        failing = GaugeMetricFamily(
            "relaybox_service_consecutive_failures",
            "Passes of a background service that failed in a row.",
            labels=["service"],
        )
        failures = CounterMetricFamily(
            "relaybox_service_failures",
            "Passes of a background service that failed.",
            labels=["service"],
        )
        for h in self._health():
            up.add_metric([h.name], 1.0 if h.healthy else 0.0)
            failing.add_metric([h.name], h.consecutive_failures)
            failures.add_metric([h.name], h.failures)
        return [up, failing, failures]
