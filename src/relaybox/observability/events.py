"""The worker's one reporting interface: every decision is an event sent to listeners.

The runner and the worker call only :class:`Observer`; they never format a log line, touch a
Prometheus counter or start a span themselves. A listener (:class:`Listener` subclass)
overrides the events it cares about: ``logs.LogListener`` writes one line per decision,
``metrics.MetricsListener`` counts, ``tracing.SpanListener`` opens and closes spans,
``channels.ChannelStates`` keeps what ``relaybox health`` needs to know about each channel.

Events are cheap to emit: plain method calls with the objects the runner already holds (no
store reads, no string building). A listener that raises is logged and never stops a delivery.

Vocabulary (the ``event`` field of a log line, the name of a method here):

==================  ==========================================================================
``claimed``         a delivery was claimed (its lease taken) by this worker
``send_started``    a part is about to be handed to the transport
``part_sent``       the transport acknowledged a part and the cursor moved (outcome, latency)
``send_failed``     a send did not deliver (outcome, error, latency); a decision follows
``retry_scheduled`` the delivery goes back to the queue for ``delay`` seconds (reason)
``paused``          a rate limit or a 503 with Retry-After pauses the channel until ``until``
``parked``          an ambiguous send nobody can settle: status ``unknown``
``expired``         older than the channel's max age: status ``expired``
``gave_up``         status ``failed`` (permanent error, or the attempt budget is spent)
``lease_lost``      another worker or an operator took the delivery; this worker stops
``released``        given back unsent at shutdown (or after a worker error)
``delivered``       the last part was acknowledged
``run_ended``       this worker is done with the delivery, whatever happened
==================  ==========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from relaybox.models import Delivery, Part

_log = logging.getLogger("relaybox.observability")


class Listener:
    """Base class: every event is a no-op; override the ones you need."""

    def worker_started(self, worker_id: str, channels: list[str], concurrency: int) -> None:
        """The claim loop is about to start."""

    def worker_stopping(self, in_flight: int, grace_seconds: float, signal_name: str) -> None:
        """A stop was asked for: no new claims; ``in_flight`` deliveries finish their part."""

    def worker_stopping_now(self, in_flight: int) -> None:
        """A second stop: in-flight sends are abandoned (left to the ambiguity rules)."""

    def worker_stopped(self, worker_id: str) -> None:
        """Everything was released; the process may exit."""

    def claimed(self, d: Delivery) -> None:
        """``d`` was claimed under a new lease."""

    def send_started(self, d: Delivery, part: Part) -> None:
        """``part`` is about to be sent."""

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        """``part`` was acknowledged (surfaced / duplicate) and its cursor write committed."""

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        """A send did not deliver; exactly one decision event follows."""

    def retry_scheduled(
        self, d: Delivery, part: Part | None, delay: float, reason: str, *, burned: bool
    ) -> None:
        """Back to the queue for ``delay`` s; ``burned``: the run counts against max_attempts."""

    def paused(self, d: Delivery, part: Part, until: float, reason: str) -> None:
        """The channel waits until ``until`` (epoch seconds); no attempt burned."""

    def parked(self, d: Delivery, part: Part, reason: str) -> None:
        """Parked as ``unknown`` for an operator."""

    def expired(self, d: Delivery, part: Part | None, reason: str) -> None:
        """Marked ``expired``."""

    def gave_up(self, d: Delivery, part: Part, reason: str) -> None:
        """Marked ``failed``."""

    def lease_lost(self, d: Delivery) -> None:
        """The lease is gone; this worker stops working on ``d``."""

    def released(self, d: Delivery, reason: str) -> None:
        """Given back to the queue unsent (shutdown, worker error)."""

    def delivered(self, d: Delivery) -> None:
        """Every part was acknowledged."""

    def run_ended(self, d: Delivery) -> None:
        """This worker is done with ``d`` (always the last event of a claim)."""

    def ack_batch(self, size: int) -> None:
        """One group-commit of acknowledged parts recorded ``size`` parts."""

    def audit_fallback(self) -> None:
        """A failure record went to the log because the store could not take it."""


class Observer(Listener):
    """Fans each event out to its listeners; what the runner and the worker hold.

    >>> observer = Observer([LogListener("w1"), MetricsListener(registry)])  # doctest: +SKIP
    """

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self.listeners: tuple[Listener, ...] = tuple(listeners)

    def add(self, listener: Listener) -> None:
        self.listeners = (*self.listeners, listener)

    def _broken(self, listener: Listener, event: str) -> None:
        # A broken listener must not stop a delivery; say so loudly, once per occurrence.
        _log.error("observer listener %r failed on %s", listener, event, exc_info=True)

    def worker_started(self, worker_id: str, channels: list[str], concurrency: int) -> None:
        for x in self.listeners:
            try:
                x.worker_started(worker_id, channels, concurrency)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "worker_started")

    def worker_stopping(self, in_flight: int, grace_seconds: float, signal_name: str) -> None:
        for x in self.listeners:
            try:
                x.worker_stopping(in_flight, grace_seconds, signal_name)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "worker_stopping")

    def worker_stopping_now(self, in_flight: int) -> None:
        for x in self.listeners:
            try:
                x.worker_stopping_now(in_flight)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "worker_stopping_now")

    def worker_stopped(self, worker_id: str) -> None:
        for x in self.listeners:
            try:
                x.worker_stopped(worker_id)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "worker_stopped")

    def claimed(self, d: Delivery) -> None:
        for x in self.listeners:
            try:
                x.claimed(d)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "claimed")

    def send_started(self, d: Delivery, part: Part) -> None:
        for x in self.listeners:
            try:
                x.send_started(d, part)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "send_started")

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        for x in self.listeners:
            try:
                x.part_sent(d, part, outcome, latency)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "part_sent")

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        for x in self.listeners:
            try:
                x.send_failed(d, part, outcome, error, latency)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "send_failed")

    def retry_scheduled(
        self, d: Delivery, part: Part | None, delay: float, reason: str, *, burned: bool
    ) -> None:
        for x in self.listeners:
            try:
                x.retry_scheduled(d, part, delay, reason, burned=burned)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "retry_scheduled")

    def paused(self, d: Delivery, part: Part, until: float, reason: str) -> None:
        for x in self.listeners:
            try:
                x.paused(d, part, until, reason)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "paused")

    def parked(self, d: Delivery, part: Part, reason: str) -> None:
        for x in self.listeners:
            try:
                x.parked(d, part, reason)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "parked")

    def expired(self, d: Delivery, part: Part | None, reason: str) -> None:
        for x in self.listeners:
            try:
                x.expired(d, part, reason)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "expired")

    def gave_up(self, d: Delivery, part: Part, reason: str) -> None:
        for x in self.listeners:
            try:
                x.gave_up(d, part, reason)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "gave_up")

    def lease_lost(self, d: Delivery) -> None:
        for x in self.listeners:
            try:
                x.lease_lost(d)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "lease_lost")

    def released(self, d: Delivery, reason: str) -> None:
        for x in self.listeners:
            try:
                x.released(d, reason)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "released")

    def delivered(self, d: Delivery) -> None:
        for x in self.listeners:
            try:
                x.delivered(d)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "delivered")

    def run_ended(self, d: Delivery) -> None:
        for x in self.listeners:
            try:
                x.run_ended(d)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "run_ended")

    def ack_batch(self, size: int) -> None:
        for x in self.listeners:
            try:
                x.ack_batch(size)
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "ack_batch")

    def audit_fallback(self) -> None:
        for x in self.listeners:
            try:
                x.audit_fallback()
            except Exception:  # noqa: BLE001 - see _broken
                self._broken(x, "audit_fallback")
