"""A worker's Prometheus side: its registry, the ``/metrics`` server and the gauges job.

>>> metrics = WorkerMetrics.serve(port=9464, host="127.0.0.1")      # doctest: +SKIP
>>> worker = Worker(store, config, listeners=[metrics.listener], metrics_url=metrics.url)
>>> metrics.attach(worker)                                            # doctest: +SKIP

Each worker gets its own :class:`CollectorRegistry` (not prometheus-client's global one), so
several workers in one process, as in tests, never share counters.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from relaybox.observability.metrics import MetricsListener, ServiceCollector, StoreGauges
from relaybox.observability.metrics_http import MetricsEndpoint
from relaybox.worker.gauges import gauges_service
from relaybox.worker.service import Service
from relaybox.worker.worker import Worker


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.listener = MetricsListener(self.registry)
        self.gauges = StoreGauges()
        self.registry.register(self.gauges)
        self.server: MetricsEndpoint | None = None
        self._detach_store: Callable[[], None] | None = None

    @classmethod
    def serve(cls, port: int, host: str = "127.0.0.1", cache_seconds: float = 0.0) -> WorkerMetrics:
        """Start ``/metrics`` on ``host:port`` (0: any free port); ConfigError if it is busy.

        ``cache_seconds``: render at most this often (``[worker] metrics_cache_seconds``)."""
        metrics = cls()
        metrics.server = MetricsEndpoint(metrics.registry, port, host, cache_seconds)
        return metrics

    @property
    def url(self) -> str | None:
        return None if self.server is None else self.server.url

    def attach(self, worker: Worker) -> None:
        """Answer scrapes and refresh the store gauges while ``worker`` runs; report its
        services' health and the size of its store's group commits."""
        cfg = worker.config.worker
        if self.server is not None:
            worker.services.add(Service("metrics_http", self.server.serve, every=None))
        worker.services.add(
            gauges_service(
                worker.store,
                self.gauges,
                cfg.metrics_refresh_seconds,
                cfg.dead_after_seconds,
                worker.clock,
            )
        )
        self.registry.register(ServiceCollector(worker.services.health))
        self._detach_store = worker.store.add_batch_listener(self.listener.store_batch)

    def close(self) -> None:
        if self._detach_store is not None:
            self._detach_store()
            self._detach_store = None
        if self.server is not None:
            self.server.close()
            self.server = None
