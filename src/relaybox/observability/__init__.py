"""What a worker says it does: logs, Prometheus metrics, OpenTelemetry spans.

The worker reports every decision to one :class:`~relaybox.observability.events.Observer`;
logs, metrics, spans and the live channel state the workers registry publishes are its
listeners (``logs.py``, ``metrics.py``, ``tracing.py``, ``channels.py``). See
docs/observability.md.
"""
