"""OpenTelemetry spans (optional: ``pip install 'relaybox[otel]'``).

Follows the OpenTelemetry messaging conventions, with relaybox as the messaging system:

* ``create <channel>`` (kind PRODUCER) around an enqueue, in the agent's process. Its context
  is stored with the delivery (``deliveries.trace_context``, a W3C ``traceparent``), so the
  worker, in another process and maybe hours later, continues the same trace;
* ``process <channel>`` (kind CONSUMER) for one claim of a delivery by a worker, a child of
  the stored context;
* ``send <channel>`` (kind PRODUCER) for each part handed to a transport, a child of the
  process span, with ``messaging.message.id`` = the part's GUID;
* ``step <name>`` (kind INTERNAL) around each idempotent step (``steps/runner.py``).

Every span carries ``messaging.system = relaybox``, ``messaging.destination.name`` (the
channel), ``messaging.operation.type`` and ``relaybox.correlation_id``. Without the
``opentelemetry`` packages every function here is a no-op and nothing else changes; with them
but without a configured SDK ``TracerProvider`` the API's own no-op tracer is used.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from relaybox.models import Delivery, Part
from relaybox.observability.events import Listener

SYSTEM = "relaybox"
TRACER_NAME = "relaybox"

AVAILABLE = importlib.util.find_spec("opentelemetry") is not None


def _trace() -> Any:
    from opentelemetry import trace

    return trace


def tracing_configured() -> bool:
    """True when OpenTelemetry is installed and an SDK tracer provider was set globally."""
    if not AVAILABLE:
        return False
    from opentelemetry.trace import ProxyTracerProvider

    return not isinstance(_trace().get_tracer_provider(), ProxyTracerProvider)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span, to store with an enqueue (None if none)."""
    if not AVAILABLE:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _context_of(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _base_attributes(channel: str, operation: str, correlation_id: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": channel,
        "messaging.operation.type": operation,
    }
    if correlation_id:
        attributes["relaybox.correlation_id"] = correlation_id
    return attributes


@contextlib.contextmanager
def enqueue_span(
    channel: str, thread_id: str, parts: int, correlation_id: str | None
) -> Iterator[Any]:
    """``create <channel>`` around an enqueue; yields the span (or None without OTel).

    The caller captures :func:`current_traceparent` inside this block, so the stored context
    points at this span and the worker's spans hang under it.
    """
    if not AVAILABLE:
        yield None
        return
    trace = _trace()
    attributes = _base_attributes(channel, "create", correlation_id)
    attributes["messaging.operation.name"] = "enqueue"
    attributes["messaging.batch.message_count"] = parts
    attributes["relaybox.thread_id"] = thread_id
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"create {channel}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def annotate_enqueue(span: Any, delivery_id: int, guids: list[str], created: bool) -> None:
    """Add what the enqueue produced to its span (no-op for None)."""
    if span is None:
        return
    span.set_attribute("relaybox.delivery.id", delivery_id)
    span.set_attribute("relaybox.created", created)
    if len(guids) == 1:
        span.set_attribute("messaging.message.id", guids[0])
    span.set_attribute("relaybox.part_guids", guids)


@contextlib.contextmanager
def step_span(step_id: str, name: str | None, correlation_id: str | None) -> Iterator[Any]:
    """``step <name>`` around one idempotent step (no-op without OTel)."""
    if not AVAILABLE:
        yield None
        return
    trace = _trace()
    attributes: dict[str, Any] = {"relaybox.step.id": step_id}
    if correlation_id:
        attributes["relaybox.correlation_id"] = correlation_id
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"step {name or step_id}", kind=trace.SpanKind.INTERNAL, attributes=attributes
    ) as span:
        yield span


class SpanListener(Listener):
    """Opens a process span per claim and a send span per part (see the module docstring)."""

    def __init__(self, worker_id: str) -> None:
        trace = _trace()
        self._trace = trace
        self._tracer = trace.get_tracer(TRACER_NAME)
        self.worker_id = worker_id
        self._process: dict[int, Any] = {}
        self._send: dict[int, Any] = {}

    def claimed(self, d: Delivery) -> None:
        attributes = _base_attributes(d.channel, "process", d.correlation_id)
        attributes["relaybox.delivery.id"] = d.id
        attributes["relaybox.thread_id"] = d.thread_id
        attributes["relaybox.worker"] = self.worker_id
        attributes["relaybox.attempt"] = d.attempts
        attributes["relaybox.start_index"] = d.start_index
        self._process[d.id] = self._tracer.start_span(
            f"process {d.channel}",
            context=_context_of(d.trace_context),
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
        )

    def send_started(self, d: Delivery, part: Part) -> None:
        parent = self._process.get(d.id)
        context = None if parent is None else self._trace.set_span_in_context(parent)
        attributes = _base_attributes(d.channel, "send", d.correlation_id)
        attributes["messaging.message.id"] = part.guid
        attributes["relaybox.delivery.id"] = d.id
        attributes["relaybox.part.index"] = part.index
        self._send[d.id] = self._tracer.start_span(
            f"send {d.channel}",
            context=context,
            kind=self._trace.SpanKind.PRODUCER,
            attributes=attributes,
        )

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        span = self._send.pop(d.id, None)
        if span is not None:
            span.set_attribute("relaybox.outcome", outcome)
            span.end()

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        span = self._send.pop(d.id, None)
        if span is not None:
            span.set_attribute("relaybox.outcome", outcome)
            span.set_attribute("error.type", outcome)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error[:200]))
            span.end()

    def _event(self, d: Delivery, name: str, **attributes: Any) -> None:
        span = self._process.get(d.id)
        if span is not None:
            span.add_event(name, attributes={k: v for k, v in attributes.items() if v is not None})

    def retry_scheduled(
        self, d: Delivery, part: Part | None, delay: float, reason: str, *, burned: bool
    ) -> None:
        self._event(d, "retry_scheduled", delay_s=delay, reason=reason, burned=burned)

    def paused(self, d: Delivery, part: Part, until: float, reason: str) -> None:
        self._event(d, "paused", until=until, reason=reason)

    def parked(self, d: Delivery, part: Part, reason: str) -> None:
        self._fail(d, "parked", reason)

    def expired(self, d: Delivery, part: Part | None, reason: str) -> None:
        self._fail(d, "expired", reason)

    def gave_up(self, d: Delivery, part: Part, reason: str) -> None:
        self._fail(d, "gave_up", reason)

    def _fail(self, d: Delivery, name: str, reason: str) -> None:
        span = self._process.get(d.id)
        if span is not None:
            span.add_event(name, attributes={"reason": reason})
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, reason[:200]))

    def lease_lost(self, d: Delivery) -> None:
        self._event(d, "lease_lost")

    def released(self, d: Delivery, reason: str) -> None:
        self._event(d, "released", reason=reason)

    def delivered(self, d: Delivery) -> None:
        self._event(d, "delivered")

    def run_ended(self, d: Delivery) -> None:
        send = self._send.pop(d.id, None)
        if send is not None:  # abandoned mid-send (second Ctrl-C, worker error)
            send.set_attribute("relaybox.outcome", "abandoned")
            send.end()
        span = self._process.pop(d.id, None)
        if span is not None:
            span.end()
