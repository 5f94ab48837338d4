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
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from relaybox.models import Delivery, Part
from relaybox.observability.events import Listener

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Histogram:
    """Bucket counts of one label set, kept as plain numbers (see :class:`_PerPart`)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # one per bound (value <= bound), then +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class _PerPart(Collector):
    """The metrics moved on every part and every claim, as plain ints and floats.

    prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock each (a histogram
    one per bucket it passes): four of them per acknowledged part cost about 10 µs of the
    worker's event loop. These are only ever updated from that loop, and read by a scrape
    that runs on the same loop (``metrics_http.py``) or copies them first (``dict(...)`` and
    ``list(...)`` copy builtins without letting another thread in), so they need no lock.
    """

    def __init__(self) -> None:
        self.parts_sent: dict[tuple[str, str], int] = {}
        self.attempts: dict[tuple[str, str], int] = {}
        self.send_duration: dict[str, _Histogram] = {}
        self.surfaced_latency: dict[str, _Histogram] = {}
        self.claims: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self.in_flight = 0

    def collect(self) -> Iterable[Metric]:
        parts = CounterMetricFamily(
            "relaybox_parts_sent",
            "Parts acknowledged by the transport, by outcome (surfaced, duplicate,"
            " reconciled_surfaced, reconciled_duplicate).",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), n in sorted(dict(self.parts_sent).items()):
            parts.add_metric([channel, outcome], n)
        attempts = CounterMetricFamily(
            "relaybox_send_attempts",
            "Sends handed to a transport, by outcome (acknowledged ones and every failure).",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), n in sorted(dict(self.attempts).items()):
            attempts.add_metric([channel, outcome], n)
        duration = HistogramMetricFamily(
            "relaybox_send_duration_seconds",
            "Time a transport took to answer one send.",
            labels=["channel"],
        )
        for channel, h in sorted(dict(self.send_duration).items()):
            duration.add_metric([channel], h.buckets(), h.total)
        surfaced = HistogramMetricFamily(
            "relaybox_enqueue_to_surfaced_seconds",
            "From enqueue to the transport acknowledging a part.",
            labels=["channel"],
        )
        for channel, h in sorted(dict(self.surfaced_latency).items()):
            surfaced.add_metric([channel], h.buckets(), h.total)
        claims = CounterMetricFamily(
            "relaybox_claims", "Deliveries claimed by this worker.", labels=["channel"]
        )
        for channel, n in sorted(dict(self.claims).items()):
            claims.add_metric([channel], n)
        delivered = CounterMetricFamily(
            "relaybox_delivered", "Deliveries fully acknowledged.", labels=["channel"]
        )
        for channel, n in sorted(dict(self.delivered).items()):
            delivered.add_metric([channel], n)
        in_flight = GaugeMetricFamily(
            "relaybox_in_flight", "Deliveries this worker holds right now.", value=self.in_flight
        )
        return [parts, attempts, duration, surfaced, claims, delivered, in_flight]

    def describe(self) -> Iterable[Metric]:
        return self.collect()


class MetricsListener(Listener):
    """Counters and histograms of the worker's decisions, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.per_part = _PerPart()
        r.register(self.per_part)
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

    def claimed(self, d: Delivery) -> None:
        claims = self.per_part.claims
        claims[d.channel] = claims.get(d.channel, 0) + 1
        self.per_part.in_flight += 1

    def run_ended(self, d: Delivery) -> None:
        self.per_part.in_flight -= 1

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        pp = self.per_part
        key = (d.channel, outcome)
        pp.parts_sent[key] = pp.parts_sent.get(key, 0) + 1
        pp.attempts[key] = pp.attempts.get(key, 0) + 1
        self._duration(d.channel).observe(latency)
        surfaced = pp.surfaced_latency.get(d.channel)
        if surfaced is None:
            surfaced = pp.surfaced_latency[d.channel] = _Histogram(_AGE_BUCKETS)
        surfaced.observe(max(0.0, time.time() - d.created_at))

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        attempts = self.per_part.attempts
        key = (d.channel, outcome)
        attempts[key] = attempts.get(key, 0) + 1
        self._duration(d.channel).observe(latency)

    def _duration(self, channel: str) -> _Histogram:
        duration = self.per_part.send_duration.get(channel)
        if duration is None:
            duration = self.per_part.send_duration[channel] = _Histogram(_LATENCY_BUCKETS)
        return duration

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
        delivered = self.per_part.delivered
        delivered[d.channel] = delivered.get(d.channel, 0) + 1

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
