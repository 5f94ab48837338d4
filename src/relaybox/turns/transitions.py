"""Every state change of a turn, in one place: each is a unit of work with one guarded write.

A *turn* is what the agent does about one inbound message: record it, run (think, call
tools, write history), reply. It is one row in ``turns``, created by the first delivery of the
message, with a lease held by the attempt that runs it::

                 begin (first delivery)
    (none) ─────────────────────────────► running ──── reply ──────► answered
                                           │ │ │ └──── no_reply ───► no_reply
                                           │ │ └────── returns ────► ended
                      error, attempts left │ │
           pending ◄───────────────────────┘ └─ a step needs ──────► blocked
              │                                  an operator            │
              │ claim: redelivery or resume       (steps resolve) claim │
              └───────────────► running ◄───────────────────────────────┘
     running, lease lapsed (the attempt died) ── claim ──► running (attempt + 1)
     any claim or error with no attempts left ───────────► failed (+ job_failures row)

Every claim bumps ``lease_epoch``; every write of an attempt is guarded by ``(id,
lease_epoch, status)``, so an attempt that lost its turn (it stalled, another took over)
changes nothing, and of two concurrent claims exactly one changes the row. A redelivery
that finds the turn running under a live lease is answered "in progress" at once (it never
waits). A claim starts attempt N by deleting the history entries of attempts < N, in the same
transaction, so a crashed attempt's entries never pile up. Each change appends a
``turn_events`` row (and, for failures, a ``job_failures`` row) in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from relaybox.audit.record import FailureReport, to_row
from relaybox.audit.recorder import insert_failure
from relaybox.errors import InvalidState, NotFound, TurnLeaseLost
from relaybox.inbound import InboundMessage, InboundRequest, RecordInbound
from relaybox.inbound.query import get_inbound
from relaybox.inbound.record import enqueue_reply, mark_no_reply_needed
from relaybox.outbox.enqueue import EnqueueResult, ReplyRequest
from relaybox.outbox.guid import derived_reply_key
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.turns.records import FINISHED, TurnRecord, TurnStatus


class Outcome(StrEnum):
    """What a delivery of an inbound message (or a resume pass) should do about its turn."""

    NEW = "new"  # first delivery: run the agent
    RETRY = "retry"  # an earlier attempt crashed or failed: run the agent again
    IN_PROGRESS = "in_progress"  # another attempt is running it now: do nothing
    DONE = "done"  # answered (or handled without a reply) before: do nothing
    BLOCKED = "blocked"  # waiting for an operator to resolve a step: do nothing
    FAILED = "failed"  # out of attempts (an operator may `relaybox turns retry`): do nothing

    @property
    def should_run(self) -> bool:
        return self in (Outcome.NEW, Outcome.RETRY)


@dataclass(frozen=True)
class Lease:
    """The fencing token of one attempt."""

    turn_id: int
    epoch: int


@dataclass(frozen=True)
class Settings:
    """Who claims, for how long, and how often a turn may run."""

    owner: str
    lease_seconds: float
    max_attempts: int
    max_payload_bytes: int = 16_384


@dataclass(frozen=True)
class Begun:
    outcome: Outcome
    inbound: InboundMessage
    turn: TurnRecord | None  # None only for a message answered before turns existed


def begin(request: InboundRequest, settings: Settings) -> Unit[Begun]:
    """Unit: record the inbound message (once) and decide what this delivery does."""

    def unit(tx: Tx) -> Begun:
        now = time.time()
        recorded = RecordInbound(request, now=now)(tx)
        message = recorded.inbound
        row = None
        if message.status == "received":  # not answered yet: this delivery may open the turn
            row = tx.fetch_one(
                "insert_turn",
                {
                    "inbound_id": message.id,
                    "channel": message.channel,
                    "thread_id": message.thread_id,
                    "resource_id": message.resource_id,
                    "correlation_id": message.correlation_id,
                    "max_attempts": settings.max_attempts,
                    "owner": settings.owner,
                    "lease_until": now + settings.lease_seconds,
                    "now": now,
                },
            )
        if row is not None:
            turn = TurnRecord.from_row(row)
            _event(tx, turn, "started", settings.owner, now, "first delivery")
            return Begun(Outcome.NEW, get_inbound(message.id)(tx), turn)
        existing = tx.fetch_one("turn_by_inbound", {"inbound_id": message.id})
        if existing is None:
            # Answered through rb.reply / mark_no_reply_needed before any turn was opened.
            return Begun(Outcome.DONE, message, None)
        outcome, turn = _take(tx, TurnRecord.from_row(existing), settings, now, "redelivery")
        return Begun(outcome, get_inbound(message.id)(tx), turn)

    return unit


def claim(turn_id: int, settings: Settings, *, source: str = "resume") -> Unit[Begun]:
    """Unit: take a turn by id (the resume service, an operator), if it may run now."""

    def unit(tx: Tx) -> Begun:
        now = time.time()
        turn = _load(tx, turn_id)
        outcome, turn = _take(tx, turn, settings, now, source)
        return Begun(outcome, get_inbound(turn.inbound_id)(tx), turn)

    return unit


def _take(
    tx: Tx, turn: TurnRecord, settings: Settings, now: float, source: str
) -> tuple[Outcome, TurnRecord]:
    """Decide about an existing turn; claim it (guarded) if its last attempt is over."""
    if turn.status in FINISHED:
        _event(tx, turn, source, settings.owner, now, f"already {turn.status}: nothing to do")
        return Outcome.DONE, turn
    if turn.status is TurnStatus.FAILED:
        _event(tx, turn, source, settings.owner, now, "failed before: nothing to do")
        return Outcome.FAILED, turn
    if turn.status is TurnStatus.RUNNING and (turn.lease_expires_at or 0) > now:
        detail = f"in progress (attempt {turn.attempts}, held by {turn.lease_owner})"
        _event(tx, turn, source, settings.owner, now, detail)
        return Outcome.IN_PROGRESS, turn
    if turn.status is TurnStatus.BLOCKED and tx.fetch_one(
        "step_needs_reconciliation",
        {"resource_id": turn.resource_id, "step_id": turn.blocked_step},
    ):
        _event(tx, turn, source, settings.owner, now, f"blocked on step {turn.blocked_step!r}")
        return Outcome.BLOCKED, turn
    why = {
        TurnStatus.RUNNING: "its attempt died (lease lapsed)",
        TurnStatus.PENDING: f"its attempt failed ({turn.error_type})",
        TurnStatus.BLOCKED: f"step {turn.blocked_step!r} was resolved",
    }[turn.status]
    guard = {"id": turn.id, "epoch": turn.lease_epoch, "status": str(turn.status), "now": now}
    if turn.attempts >= turn.max_attempts:
        message = f"turn {turn.id} gave up after {turn.attempts} attempts: {why}"
        row = tx.fetch_one(
            "fail_turn", {**guard, "error_type": "TurnAttemptsExhausted", "error_message": message}
        )
        if row is None:  # another claim changed it first
            return Outcome.IN_PROGRESS, _load(tx, turn.id)
        failed = TurnRecord.from_row(row)
        _event(tx, failed, "failed", settings.owner, now, message)
        _failure(tx, failed, "TurnAttemptsExhausted", message, True, settings, now)
        return Outcome.FAILED, failed
    row = tx.fetch_one(
        "claim_turn",
        {**guard, "owner": settings.owner, "lease_until": now + settings.lease_seconds},
    )
    if row is None:  # another claim won the race: that attempt runs it
        return Outcome.IN_PROGRESS, _load(tx, turn.id)
    claimed = TurnRecord.from_row(row)
    discarded = tx.execute(
        "discard_turn_messages", {"turn_id": claimed.id, "attempt": claimed.attempts}
    )
    detail = f"{source}: {why}; attempt {claimed.attempts}"
    if discarded:
        detail += f"; history entries of earlier attempts discarded: {discarded}"
    _event(tx, claimed, "retried", settings.owner, now, detail)
    return Outcome.RETRY, claimed


def renew(lease: Lease, lease_seconds: float) -> Unit[bool]:
    """Unit: extend the running attempt's lease; False if the attempt lost its turn."""

    def unit(tx: Tx) -> bool:
        params = {
            "id": lease.turn_id,
            "epoch": lease.epoch,
            "lease_until": time.time() + lease_seconds,
        }
        return tx.execute("renew_turn_lease", params) == 1

    return unit


def answer(
    lease: Lease,
    reply: ReplyRequest,
    history: Sequence[dict[str, Any]],
    *,
    reply_key: str | None,
    worker: str,
) -> Unit[tuple[TurnRecord, EnqueueResult]]:
    """Unit: the history entries, the reply and the "answered" mark, in one transaction.

    The reply key is ``rbx-<store identity>:turn-<id>:reply`` unless the caller gives one, so
    it is unique by construction: however often the turn runs, one reply; no other store's
    reply shares its GUIDs.
    """

    def unit(tx: Tx) -> tuple[TurnRecord, EnqueueResult]:
        now = time.time()
        turn = _load(tx, lease.turn_id)
        _insert_history(tx, lease, history, now)
        key = reply_key or derived_reply_key(tx, f"turn-{turn.id}:reply")
        inbound = tx.fetch_one("inbound_by_id", {"id": turn.inbound_id})
        if inbound is None:
            raise NotFound(f"inbound message {turn.inbound_id} of turn {turn.id} is gone")
        result = enqueue_reply(tx, inbound, _with_key(reply, key), True, now)
        done = _finish(tx, lease, TurnStatus.ANSWERED, result.delivery.id, now)
        detail = f"delivery {result.delivery.id}" + ("" if result.created else " (stored before)")
        if history:
            detail += f"; history entries: {len(history)}"
        _event(tx, done, "answered", worker, now, detail)
        return done, result

    return unit


def no_reply(
    lease: Lease, reason: str | None, history: Sequence[dict[str, Any]], *, worker: str
) -> Unit[TurnRecord]:
    """Unit: handled, nothing to send (the message is then never a gap)."""

    def unit(tx: Tx) -> TurnRecord:
        now = time.time()
        turn = _load(tx, lease.turn_id)
        _insert_history(tx, lease, history, now)
        mark_no_reply_needed(turn.inbound_id, reason)(tx)
        done = _finish(tx, lease, TurnStatus.NO_REPLY, None, now)
        _event(tx, done, "no_reply", worker, now, reason)
        return done

    return unit


def end(lease: Lease, *, worker: str) -> Unit[TurnRecord]:
    """Unit: the attempt returned without ``turn.reply``: answered if a reply was enqueued
    for the message another way (``rb.reply``), else ``ended`` (it stays a gap)."""

    def unit(tx: Tx) -> TurnRecord:
        now = time.time()
        turn = _load(tx, lease.turn_id)
        inbound = tx.fetch_one("inbound_by_id", {"id": turn.inbound_id})
        stored = None if inbound is None else inbound["status"]
        status = {"reply_enqueued": TurnStatus.ANSWERED, "no_reply_needed": TurnStatus.NO_REPLY}
        done = _finish(tx, lease, status.get(str(stored), TurnStatus.ENDED), None, now)
        detail = "returned without a reply" if done.status is TurnStatus.ENDED else None
        _event(tx, done, str(done.status), worker, now, detail)
        return done

    return unit


def release(
    lease: Lease,
    *,
    error_type: str,
    error_message: str,
    retry_delay: float,
    blocked_step: str | None,
    settings: Settings,
) -> Unit[TurnRecord | None]:
    """Unit: the attempt stopped with an error. ``blocked_step``: a step needs an operator
    (the turn waits for `steps resolve`); else pending after ``retry_delay``, or failed when
    no attempts are left. None if the attempt had already lost its turn."""

    def unit(tx: Tx) -> TurnRecord | None:
        now = time.time()
        turn = _load(tx, lease.turn_id)
        if blocked_step is not None:
            status, event = TurnStatus.BLOCKED, "blocked"
        elif turn.attempts >= turn.max_attempts:
            status, event = TurnStatus.FAILED, "failed"
        else:
            status, event = TurnStatus.PENDING, "attempt_failed"
        row = tx.fetch_one(
            "release_turn",
            {
                "id": lease.turn_id,
                "epoch": lease.epoch,
                "status": str(status),
                "available_at": now + retry_delay if status is TurnStatus.PENDING else None,
                "blocked_step": blocked_step,
                "error_type": error_type,
                "error_message": error_message,
                "now": now,
            },
        )
        if row is None:
            return None
        released = TurnRecord.from_row(row)
        detail = f"{error_type}: {error_message}"
        if status is TurnStatus.FAILED:
            detail += f" (no attempts left of {released.max_attempts})"
        _event(tx, released, event, settings.owner, now, detail)
        terminal = status is TurnStatus.FAILED
        _failure(tx, released, error_type, error_message, terminal, settings, now)
        return released

    return unit


def retry_failed(turn_id: int, more_attempts: int, who: str) -> Unit[TurnRecord]:
    """Unit (operator): give a failed turn ``more_attempts`` more; it becomes pending now."""

    def unit(tx: Tx) -> TurnRecord:
        now = time.time()
        turn = _load(tx, turn_id)
        row = tx.fetch_one("retry_failed_turn", {"id": turn_id, "more": more_attempts, "now": now})
        if row is None:
            raise InvalidState(f"turn {turn_id} is {turn.status}, not failed: nothing to retry")
        retried = TurnRecord.from_row(row)
        _event(tx, retried, "operator_retry", who, now, f"{more_attempts} more attempt(s)")
        return retried

    return unit


# -- helpers --------------------------------------------------------------------------


def _load(tx: Tx, turn_id: int) -> TurnRecord:
    row = tx.fetch_one("turn_by_id", {"id": turn_id})
    if row is None:
        raise NotFound(f"turn {turn_id} does not exist")
    return TurnRecord.from_row(row)


def _finish(
    tx: Tx, lease: Lease, status: TurnStatus, delivery_id: int | None, now: float
) -> TurnRecord:
    row = tx.fetch_one(
        "finish_turn",
        {
            "id": lease.turn_id,
            "epoch": lease.epoch,
            "status": str(status),
            "reply_delivery_id": delivery_id,
            "now": now,
        },
    )
    if row is None:  # raising undoes the whole unit: nothing of this attempt is stored
        raise TurnLeaseLost(
            f"turn {lease.turn_id} was taken over by another attempt; this attempt's"
            f" {status} was not stored"
        )
    return TurnRecord.from_row(row)


def _insert_history(tx: Tx, lease: Lease, entries: Sequence[dict[str, Any]], now: float) -> None:
    for params in entries:
        row = tx.fetch_one(
            "insert_turn_message",
            {**params, "now": now, "turn_id": lease.turn_id, "epoch": lease.epoch},
        )
        if row is None:
            raise TurnLeaseLost(
                f"turn {lease.turn_id} was taken over by another attempt; nothing was stored"
            )


def _with_key(reply: ReplyRequest, key: str) -> ReplyRequest:
    return replace(reply, reply_key=key)


def _event(
    tx: Tx, turn: TurnRecord, event: str, worker: str | None, now: float, detail: str | None
) -> None:
    tx.execute(
        "insert_turn_event",
        {
            "turn_id": turn.id,
            "correlation_id": turn.correlation_id,
            "event": event,
            "attempt": turn.attempts,
            "worker": worker,
            "now": now,
            "detail": detail,
        },
    )


def _failure(
    tx: Tx,
    turn: TurnRecord,
    error_type: str,
    message: str,
    terminal: bool,
    settings: Settings,
    now: float,
) -> None:
    report = FailureReport(
        queue="turns",
        error=message,
        error_type=error_type,
        job_id=turn.id,
        stage="attempts_exhausted" if terminal else str(turn.status),
        channel=turn.channel,
        thread_id=turn.thread_id,
        resource_id=turn.resource_id,
        correlation_id=turn.correlation_id,
        attempt=turn.attempts,
        payload={"inbound_id": turn.inbound_id, "blocked_step": turn.blocked_step},
        terminal=terminal,
        worker_id=settings.owner,
        at=now,
    )
    insert_failure(to_row(report, settings.max_payload_bytes))(tx)
