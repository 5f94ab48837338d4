"""Deliver one claimed delivery, part by part, from its resume cursor.

This is the per-delivery half of the worker: it decides, for each answer a transport gives,
whether the cursor advances, the delivery waits, retries, fails, or is parked. Every decision
is one fenced transition from :mod:`relaybox.outbox.transitions`, and is reported to the
worker's :class:`~relaybox.observability.events.Observer` (logs, metrics and spans listen there;
this module never calls them directly).

Outages: a :class:`~relaybox.transports.base.ReceiverDown` answer (connection refused, 5xx, a
timeout on a deduplicating transport) says nothing about the part, so it does not burn an
attempt; the delivery backs off by the channel's failing streak (every delivery on a down
channel backs off together, up to ``backoff_max_seconds``) until the reply's max age expires it.
Answers that will not change by waiting (not surfaced, a transport bug) keep the attempt budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from relaybox.audit.deliveries import delivery_failure
from relaybox.audit.recorder import FailureAuditor, log_unrecorded
from relaybox.config import ChannelConfig
from relaybox.errors import StoreConnectionLost, StoreUnavailable
from relaybox.models import Delivery, Outcome, Part, Status
from relaybox.observability.channels import ChannelStates
from relaybox.observability.events import Observer
from relaybox.outbox import transitions as tr
from relaybox.outbox.backoff import retry_delay
from relaybox.outbox.conversations import AdmitConversation
from relaybox.store import Store
from relaybox.store.base import Unit
from relaybox.transports.base import (
    AmbiguousSend,
    NotSent,
    OutgoingPart,
    PermanentError,
    RateLimited,
    ReceiverDown,
    SendResult,
    TransientError,
    Transport,
    TransportError,
    Unavailable,
)
from relaybox.worker.acks import AckBatcher
from relaybox.worker.deadlines import SendDeadlines
from relaybox.worker.pacing import Pacer

log = logging.getLogger("relaybox.worker")


class CursorWriteFailed(StoreUnavailable):
    """A part was sent, but the store failed while recording it (cursor not known to move).

    The send counts as ambiguous: the next run resends the part under the same GUID (a
    deduplicating transport drops the copy) or reconciles it. ``attempt`` is the attempt row
    that could not be written, for the worker to record once the store is back.
    """

    def __init__(self, message: str, attempt: tr.AttemptRecord) -> None:
        super().__init__(message)
        self.attempt = attempt


@dataclass
class HeldDelivery:
    """A delivery this worker is working on; the heartbeat flips ``lost`` if the lease goes."""

    delivery: Delivery
    lease: tr.Lease
    lost: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class RunnerContext:
    store: Store
    worker_id: str
    pacer: Pacer
    stopping: Callable[[], bool]
    audit: FailureAuditor | None = None  # every failed attempt is audited (spec C3)
    observer: Observer = field(default_factory=Observer)
    channels: ChannelStates = field(default_factory=lambda: ChannelStates([]))
    acks: AckBatcher = field(init=False, repr=False)
    deadlines: SendDeadlines = field(default_factory=SendDeadlines)  # send timeouts
    # Told which deliveries became their thread's head when a reply was delivered.
    on_next_heads: Callable[[list[int]], None] | None = None

    def __post_init__(self) -> None:
        self.acks = AckBatcher(
            self.store, on_batch=self.observer.ack_batch, on_next_heads=self.on_next_heads
        )


class DeliveryRunner:
    def __init__(
        self,
        ctx: RunnerContext,
        held: HeldDelivery,
        channel: ChannelConfig,
        transport: Transport,
    ) -> None:
        self.ctx = ctx
        self.held = held
        self.d = held.delivery
        self.lease = held.lease
        self.channel = channel
        self.transport = transport
        self.observer = ctx.observer
        # Delivered through the ack batch, which told the worker the thread's next head.
        self.successor_reported = False

    async def run(self) -> None:
        parts = list(self.d.parts)
        if not parts:  # cursor already past the end: nothing left (operator requeue)
            return
        if not await self._admitted():
            return
        if self._predecessor_left_send_open() and not self.transport.dedups_by_guid:
            verdict = await self._reconcile(parts[0], cause="previous worker stopped mid-send")
            if verdict == "stop":
                return
            if verdict == "sent":
                parts = parts[1:]
        for part in parts:
            if not await self._send_part(part):
                return

    async def _admitted(self) -> bool:
        """The channel's new-conversations-per-day limit lets this delivery start (or waits)."""
        limit = self.channel.new_conversations_per_day
        if limit is None or self.d.start_index > 0:
            return True
        wait = await self.ctx.store.run(AdmitConversation(self.d.channel, self.d.thread_id, limit))
        if wait is None:
            return True
        reason = f"paced: channel {self.d.channel!r} started {limit} new conversations today"
        await self._release(wait, refund=True, error=reason, clear_in_flight=False)
        self.observer.retry_scheduled(self.d, None, wait, reason, burned=False)
        return False

    def _predecessor_left_send_open(self) -> bool:
        return self.d.in_flight_index is not None and self.d.in_flight_index == self.d.start_index

    # -- one part ----------------------------------------------------------------------

    async def _send_part(self, part: Part) -> bool:
        """Send one part; True if the delivery should go on to the next part."""
        if self.held.lost:
            return False
        if self.ctx.stopping():
            await self._release(0.0, refund=True, error=None, clear_in_flight=False)
            self.observer.released(self.d, "worker stopping")
            return False
        if self.d.expires_at is not None and time.time() > self.d.expires_at:
            reason = "expired: older than the channel's max age"
            await self._finish(Status.EXPIRED, part, reason, "expired")
            self.observer.expired(self.d, part, reason)
            return False
        await self.ctx.pacer.wait_turn(
            self.channel.name, self.d.thread_id, self.d.recipient, part.body
        )
        if not self.transport.dedups_by_guid:
            marked = await self.ctx.store.run(tr.mark_send_started(self.lease, part.index))
            if not marked:
                self._lost()  # lease lost or delivery cancelled
                return False
        self.observer.send_started(self.d, part)
        started = time.time()
        try:
            # One timer for all sends, not one per send (worker/deadlines.py).
            async with self.ctx.deadlines.within(self.channel.send_timeout_seconds, self.held.task):
                result = await self.transport.send(self._outgoing(part))
        except TimeoutError:
            error: TransportError = AmbiguousSend(
                f"no answer within {self.channel.send_timeout_seconds:g}s"
            )
        except TransportError as transport_error:
            error = transport_error
        except Exception as unexpected:  # a transport bug or garbage answer: retry, keep text
            error = TransientError(f"transport raised {type(unexpected).__name__}: {unexpected}")
            log.warning("transport %s raised unexpectedly", self.channel.name, exc_info=True)
        else:
            self.ctx.pacer.sent(self.channel.name, self.d.thread_id, self.d.recipient)
            return await self._on_result(part, result, started)
        self.ctx.pacer.sent(self.channel.name, self.d.thread_id, self.d.recipient)
        self.observer.send_failed(
            self.d, part, _outcome_of(error), str(error), time.time() - started
        )
        return await self._on_error(part, error, started)

    def _lost(self) -> None:
        if not self.held.lost:
            self.held.lost = True
            self.observer.lease_lost(self.d)

    async def _on_result(self, part: Part, result: SendResult, started: float) -> bool:
        if result.outcome is Outcome.NOT_SURFACED:
            self.observer.send_failed(
                self.d, part, "not_surfaced", "accepted but not surfaced", time.time() - started
            )
            return await self._retry_or_fail(
                part,
                TransientError("accepted but not surfaced to the user"),
                started,
                outcome="not_surfaced",
                clear_in_flight=True,
            )
        attempt = self._attempt(part, started, str(result.outcome), None, result.message_id)
        sent = tr.SentPart(
            self.lease,
            part.index,
            str(result.outcome),
            result.message_id,
            attempt,
            last=part.index + 1 >= self.d.part_count,
        )
        try:
            # Recorded together with the parts other deliveries sent meanwhile (one commit).
            moved = await self.ctx.acks.record_sent(sent)
        except StoreUnavailable as error:
            note = f"sent, but recording it failed ({error}): an ambiguous send"
            raise CursorWriteFailed(
                f"delivery {self.d.id} part {part.index + 1}: {note}",
                replace(attempt, error=note),
            ) from error
        if not moved:
            self._lost()
            return False
        self.observer.part_sent(self.d, part, str(result.outcome), time.time() - started)
        if sent.last:
            self.successor_reported = True
            self.observer.delivered(self.d)
        return True

    async def _on_error(self, part: Part, error: TransportError, started: float) -> bool:
        if isinstance(error, RateLimited):
            return await self._wait_out(part, error, started)
        if isinstance(error, PermanentError):
            reason = f"permanent error: {error}"
            await self._finish(Status.FAILED, part, reason, "permanent", started=started)
            self.observer.gave_up(self.d, part, reason)
            return False
        if isinstance(error, ReceiverDown):
            return await self._wait_for_receiver(part, error, started, outcome="receiver_down")
        if isinstance(error, AmbiguousSend):
            if self.transport.dedups_by_guid:
                # Resending under the same GUID is safe: the far side drops a second copy. No
                # answer in time is what a receiver that is down looks like: wait it out.
                return await self._wait_for_receiver(part, error, started, outcome="ambiguous")
            verdict = await self._reconcile(part, cause=str(error), started=started)
            return verdict == "sent"
        return await self._retry_or_fail(
            part, error, started, outcome="transient", clear_in_flight=True
        )

    async def _wait_out(self, part: Part, error: RateLimited, started: float) -> bool:
        """429 / 503 with retry-after: come back later without burning an attempt."""
        outcome = "unavailable" if isinstance(error, Unavailable) else "rate_limited"
        delay = error.retry_after
        if delay is None:
            delay = retry_delay(self.channel.retry, 1)
        self.ctx.pacer.pause(self.channel.name, delay)
        self.observer.paused(self.d, part, time.time() + delay, f"{outcome}: {error}")
        await self._release(
            delay,
            refund=True,
            error=f"{outcome}: {error}",
            clear_in_flight=True,
            attempt=self._attempt(part, started, outcome, str(error)),
            failure=self._failure(
                part, outcome, f"{outcome}: {error}", terminal=False, error=error
            ),
        )
        return False

    async def _retry_or_fail(
        self,
        part: Part,
        error: TransportError,
        started: float,
        *,
        outcome: str,
        clear_in_flight: bool,
    ) -> bool:
        attempt = self._attempt(part, started, outcome, str(error))
        if self.d.attempts >= self.d.max_attempts:
            message = f"gave up after {self.d.attempts} attempts: {error}"
            failure = self._failure(part, outcome, message, terminal=True, error=error)
            await self._decide(
                tr.finish(self.lease, Status.FAILED, message, attempt, failure=failure), failure
            )
            self.observer.gave_up(self.d, part, message)
            return False
        delay = retry_delay(self.channel.retry, self.d.attempts)
        await self._release(
            delay,
            refund=False,
            error=str(error),
            clear_in_flight=clear_in_flight,
            attempt=attempt,
            failure=self._failure(part, outcome, str(error), terminal=False, error=error),
        )
        self.observer.retry_scheduled(self.d, part, delay, f"{outcome}: {error}", burned=True)
        return False

    async def _wait_for_receiver(
        self, part: Part, error: TransportError, started: float, *, outcome: str
    ) -> bool:
        """The receiver is down: retry later without burning an attempt (see module doc).

        The delay grows with the channel's failing streak, so a long outage is probed about
        once per ``backoff_max_seconds`` per queued thread, and the max age still ends it.
        """
        streak = max(1, self.ctx.channels.failing_streak(self.channel.name))
        delay = retry_delay(self.channel.retry, streak)
        await self._release(
            delay,
            refund=True,
            error=f"{outcome}: {error}",
            clear_in_flight=True,
            attempt=self._attempt(part, started, outcome, str(error)),
            failure=self._failure(part, outcome, str(error), terminal=False, error=error),
        )
        self.observer.retry_scheduled(self.d, part, delay, f"{outcome}: {error}", burned=False)
        return False

    # -- ambiguous sends ---------------------------------------------------------------

    async def _reconcile(self, part: Part, *, cause: str, started: float | None = None) -> str:
        """Ask the transport whether ``part`` arrived; return "sent", "resend" or "stop"."""
        begun = time.time() if started is None else started
        try:
            verdict = await asyncio.wait_for(
                self.transport.reconcile(self._outgoing(part)), self.channel.send_timeout_seconds
            )
        except Exception as error:  # noqa: BLE001 - a failing reconcile means "cannot tell"
            log.warning("reconcile on %s failed: %s", self.channel.name, error)
            verdict = None
        if isinstance(verdict, SendResult) and verdict.outcome is not Outcome.NOT_SURFACED:
            attempt = self._attempt(
                part,
                begun,
                f"reconciled_{verdict.outcome}",
                f"ambiguous ({cause}); transport confirms delivery",
                verdict.message_id,
            )
            sent = await self.ctx.store.run(
                tr.record_sent(
                    self.lease, part.index, str(verdict.outcome), verdict.message_id, attempt
                )
            )
            if not sent:
                self._lost()
                return "stop"
            self.observer.part_sent(
                self.d, part, f"reconciled_{verdict.outcome}", time.time() - begun
            )
            if part.index + 1 >= self.d.part_count:
                self.observer.delivered(self.d)
            return "sent"
        if isinstance(verdict, NotSent | SendResult):
            if started is None:
                return "resend"  # left open by a dead worker, never arrived: send it now
            await self._retry_or_fail(
                part,
                AmbiguousSend(f"{cause}; transport confirms it did not arrive"),
                started,
                outcome="ambiguous",
                clear_in_flight=True,
            )
            return "stop"
        reason = (
            f"ambiguous send of part {part.index + 1} ({cause}); the transport does not"
            " deduplicate and cannot tell whether it arrived: parked for an operator"
        )
        await self._finish(Status.UNKNOWN, part, reason, "parked", started=begun)
        self.observer.parked(self.d, part, reason)
        return "stop"

    # -- writes ------------------------------------------------------------------------

    async def _release(
        self,
        delay: float,
        *,
        refund: bool,
        error: str | None,
        clear_in_flight: bool,
        attempt: tr.AttemptRecord | None = None,
        failure: dict[str, Any] | None = None,
    ) -> None:
        unit = tr.release(
            self.lease,
            delay_seconds=delay,
            refund_attempt=refund,
            error=error,
            clear_in_flight=clear_in_flight,
            attempt=attempt,
            failure=failure,
        )
        await self._decide(unit, failure)

    async def _finish(
        self,
        status: Status,
        part: Part,
        error: str,
        outcome: str,
        *,
        started: float | None = None,
    ) -> None:
        begun = time.time() if started is None else started
        attempt = self._attempt(part, begun, outcome, error)
        failure = self._failure(part, outcome, error, terminal=True)
        await self._decide(tr.finish(self.lease, status, error, attempt, failure=failure), failure)

    def _failure(
        self,
        part: Part,
        outcome: str,
        message: str,
        *,
        terminal: bool,
        error: BaseException | None = None,
    ) -> dict[str, Any] | None:
        """The audit row (spec C3) of this failed attempt or decision, written with it."""
        if self.ctx.audit is None:
            return None
        report = delivery_failure(
            self.d,
            part,
            outcome=outcome,
            message=message,
            terminal=terminal,
            worker_id=self.ctx.worker_id,
            error=error,
        )
        return self.ctx.audit.row(report)

    async def _decide(self, unit: Unit[bool], failure: dict[str, Any] | None) -> bool:
        """Run a release/finish unit; if it fails, its audit row goes to the log instead."""
        try:
            return await self.ctx.store.run(unit)
        except BaseException as error:
            if failure is not None:
                log_unrecorded(
                    failure,
                    f"the decision it explains was not stored: {type(error).__name__}: {error}",
                    maybe_stored=isinstance(error, StoreConnectionLost),
                )
                self.observer.audit_fallback()
            raise

    def _attempt(
        self,
        part: Part,
        started: float,
        outcome: str,
        error: str | None,
        message_id: str | None = None,
    ) -> tr.AttemptRecord:
        return tr.AttemptRecord(
            delivery_id=self.d.id,
            attempt=self.d.run,
            worker_id=self.ctx.worker_id,
            started_at=started,
            outcome=outcome,
            correlation_id=self.d.correlation_id,
            part_index=part.index,
            guid=part.guid,
            latency_ms=round((time.time() - started) * 1000.0, 3),
            error=error,
            transport_message_id=message_id,
        )

    def _outgoing(self, part: Part) -> OutgoingPart:
        return OutgoingPart(
            guid=part.guid,
            delivery_id=self.d.id,
            thread_id=self.d.thread_id,
            recipient=self.d.recipient,
            text=part.body,
            index=part.index,
            count=self.d.part_count,
            correlation_id=self.d.correlation_id,
            channel=self.d.channel,
        )


def _outcome_of(error: TransportError) -> str:
    """The attempt outcome a transport error is recorded (and counted) as."""
    if isinstance(error, Unavailable):
        return "unavailable"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, ReceiverDown):
        return "receiver_down"
    if isinstance(error, AmbiguousSend):
        return "ambiguous"
    return "transient"
