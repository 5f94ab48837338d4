"""Every state change of a delivery, in one place, each one guarded write.

Worker-side transitions are fenced by ``(id, lease_epoch)``: a worker whose lease lapsed and
was taken over by another finds that its write changed no row, and stops. Operator-side
transitions (cancel, requeue) are guarded by the statuses they apply to.

    queued --claim--> sending --advance (last part)--> delivered
                        |  \\--release (retry later, wait, shutdown)--> queued
                        \\--finish--> failed | expired | unknown
    queued|sending --cancel--> cancelled          (supersede: queued, not started)
    failed|unknown|expired --requeue (operator: retry, resolve)--> queued

Every transition that is a decision rather than a send (an operator's cancel, retry or resolve;
a worker's give-up, park or expiry; a worker decision that found its lease taken over) appends
a ``delivery_events`` row, and a worker's failure its ``job_failures`` audit row, **in the same
unit** as the write it explains (see ``outbox/events.py``): a crash cannot separate them, and a
decision whose fenced write changed nothing is recorded as ``lease_lost``, not as what it
would have been.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relaybox.audit.recorder import insert_failure_within
from relaybox.errors import InvalidState, NotFound
from relaybox.models import Delivery, Part, Status
from relaybox.outbox.events import API, Actor, EventKind, record_event
from relaybox.outbox.inspect import get_delivery
from relaybox.store import Tx
from relaybox.store.base import Row, Unit


@dataclass(frozen=True)
class Lease:
    """Proof that this worker holds a delivery: its fencing token."""

    delivery_id: int
    epoch: int


@dataclass(slots=True)
class AttemptRecord:
    """One append-only row of ``delivery_attempts``.

    Not frozen, like :class:`SentPart`: one of each is built for every part a worker sends, and
    a frozen dataclass sets each field through ``object.__setattr__`` (1.6 against 0.4 µs
    here). Nothing changes one after it is built; a changed copy is made with ``replace``.
    """

    delivery_id: int
    attempt: int
    worker_id: str
    started_at: float
    outcome: str
    correlation_id: str
    part_index: int | None = None
    guid: str | None = None
    latency_ms: float | None = None
    error: str | None = None
    transport_message_id: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
            "part_index": self.part_index,
            "guid": self.guid,
            "worker_id": self.worker_id,
            "started_at": self.started_at,
            "latency_ms": self.latency_ms,
            "outcome": self.outcome,
            "error": self.error,
            "transport_message_id": self.transport_message_id,
            "correlation_id": self.correlation_id,
        }


def claim(
    worker_id: str,
    channels: list[str],
    limit: int,
    lease_seconds: float,
    among: list[int] | None = None,
) -> Unit[list[Delivery]]:
    """Unit: claim up to ``limit`` thread heads; returns deliveries with their unsent parts.

    ``among``: consider only these deliveries (those :func:`record_sent_many` reported as
    their thread's next head) instead of scanning for heads; the head checks are the same.
    """

    def unit(tx: Tx) -> list[Delivery]:
        now = time.time()
        params: dict[str, Any] = {
            "worker_id": worker_id,
            "channels": channels,
            "limit": limit,
            "now": now,
            "lease_until": now + lease_seconds,
        }
        # Two statements: the first picks thread heads (on PostgreSQL it also locks their
        # threads), the second re-checks them under those locks and takes them.
        if among is None:
            found = _scan_for_heads(tx, params)
        elif not among:
            return []
        else:
            found = tx.fetch_all("claimable_heads_among", {**params, "ids": among})
        heads = [int(r["id"]) for r in found]
        if not heads:
            return []
        rows = tx.fetch_all("claim_deliveries", {**params, "ids": heads})
        if not rows:
            return []
        cursors = {int(r["id"]): int(r["start_index"]) for r in rows}
        parts: dict[int, list[Part]] = {i: [] for i in cursors}
        for p in tx.fetch_all("parts_of_deliveries", {"ids": list(cursors)}):
            delivery_id, index = int(p["delivery_id"]), int(p["part_index"])
            if index >= cursors[delivery_id]:  # parts before the cursor were acknowledged
                parts[delivery_id].append(Part(index=index, guid=p["guid"], body=p["body"]))
        claimed = [Delivery.from_row(r, tuple(parts[int(r["id"])])) for r in rows]
        claimed.sort(key=lambda d: d.id)
        return claimed

    return unit


def _scan_for_heads(tx: Tx, params: dict[str, Any]) -> list[Row]:
    """Claim step 1 by a scan of the ready index (see claimable_heads).

    On PostgreSQL the scan runs with bitmap scans off (claim_scan_in_index_order: only until
    the statement has run; a failed unit's savepoint undoes it too): the planner otherwise
    trades the ordered walk that stops after ``limit`` heads for a bitmap scan of every active
    delivery and a sort, whenever its estimates (which cannot see the LIMIT past the thread
    locks) put the two close, and that costs a sort of the whole backlog on every claim.
    """
    if tx.dialect != "postgres":
        return tx.fetch_all("claimable_heads", params)
    tx.execute("claim_scan_in_index_order")
    found = tx.fetch_all("claimable_heads", params)
    tx.execute("claim_scan_planner_defaults")
    return found


def renew(leases: list[Lease], lease_seconds: float) -> Unit[set[int]]:
    """Unit: extend leases (one statement for all); returns the ids whose lease is still ours."""

    def unit(tx: Tx) -> set[int]:
        if not leases:
            return set()
        params = {
            "leases": json.dumps([[lease.delivery_id, lease.epoch] for lease in leases]),
            "lease_until": time.time() + lease_seconds,
        }
        return {int(r["id"]) for r in tx.fetch_all("renew_leases", params)}

    return unit


def mark_send_started(lease: Lease, part_index: int) -> Unit[bool]:
    """Unit: note that a non-deduplicated send of ``part_index`` is about to begin.

    Should the worker die before recording the outcome, the next worker finds the mark and
    knows the send is ambiguous. Returns False if the lease was lost.
    """

    def unit(tx: Tx) -> bool:
        params = {
            "id": lease.delivery_id,
            "epoch": lease.epoch,
            "part_index": part_index,
            "now": time.time(),
        }
        return tx.execute("mark_send_started", params) == 1

    return unit


@dataclass(slots=True)
class SentPart:
    """A part the transport acknowledged, waiting to move its delivery's cursor."""

    lease: Lease
    part_index: int
    outcome: str
    message_id: str | None
    attempt: AttemptRecord
    last: bool = True  # the delivery's last part (False lets SQLite take a cheaper write)


def record_sent(
    lease: Lease, part_index: int, outcome: str, message_id: str | None, attempt: AttemptRecord
) -> Unit[bool]:
    """Unit: a part was acknowledged; advance the cursor (fenced) and log the attempt.

    Returns False if the lease was lost: the cursor did not move, but the attempt row is
    still written, because the send did happen.
    """
    many = record_sent_many([SentPart(lease, part_index, outcome, message_id, attempt)])

    def unit(tx: Tx) -> bool:
        return many(tx).moved[0]

    return unit


@dataclass(frozen=True)
class AcksRecorded:
    """What :func:`record_sent_many` did: per part, did its cursor move; and which queued
    deliveries became their thread's head because the one before them was delivered."""

    moved: list[bool]
    next_heads: list[int]


def record_sent_many(sent: list[SentPart]) -> Unit[AcksRecorded]:
    """Unit: :func:`record_sent` for many deliveries at once (at most one part each).

    A worker records the parts its deliveries had acknowledged meanwhile together (see
    ``worker/acks.py``). Each part's result is exactly what :func:`record_sent` would have
    returned for it alone. PostgreSQL does it all in one statement (one round trip);
    SQLite, in process, one fenced update per cursor and one batched call for the rest.
    Each delivered reply's successor in its thread comes back in ``next_heads``, so the
    worker can claim it without scanning for heads.
    """
    if len({s.lease.delivery_id for s in sent}) != len(sent):
        raise ValueError("record_sent_many takes at most one part per delivery")

    def unit(tx: Tx) -> AcksRecorded:
        now = time.time()
        next_heads: list[int] = []
        if tx.network_round_trips:
            moved: set[int] = set()
            for r in tx.fetch_all("record_sent_batch", _ack_arrays(sent, now)):
                moved.add(int(r["id"]))
                if r["next_id"] is not None:
                    next_heads.append(int(r["next_id"]))
            results = [s.lease.delivery_id in moved for s in sent]
            lost = [
                _attempt_params(s, False) for s, ok in zip(sent, results, strict=True) if not ok
            ]
            if lost:  # the statement wrote the attempts of the moved cursors only
                tx.execute_many("insert_attempt", lost)
            return AcksRecorded(results, next_heads)
        results = [_advance_cursor(tx, s, now) for s in sent]
        tx.execute_many(
            "insert_attempt",
            [_attempt_params(s, moved) for s, moved in zip(sent, results, strict=True)],
        )
        for s, advanced in zip(sent, results, strict=True):
            if advanced and s.last:
                row = tx.fetch_one("next_in_thread", {"id": s.lease.delivery_id})
                if row is not None and row["id"] is not None:
                    next_heads.append(int(row["id"]))
        return AcksRecorded(results, next_heads)

    return unit


def _advance_cursor(tx: Tx, s: SentPart, now: float) -> bool:
    params = {
        "id": s.lease.delivery_id,
        "epoch": s.lease.epoch,
        "part_index": s.part_index,
        "now": now,
    }
    if not s.last and tx.execute("advance_cursor_within", params) == 1:
        return True
    # The last part, or a part whose cheaper write changed nothing (lease lost, or not in
    # fact within the delivery): the full write decides.
    return tx.execute("advance_cursor", params) == 1


_LEASE_LOST = "lease lost: cursor not advanced"


def _attempt_params(s: SentPart, moved: bool) -> dict[str, Any]:
    params = s.attempt.params()
    params["transport_message_id"] = _message_id(s)
    if not moved:  # the send happened, but another worker owns the delivery now
        params["error"] = _LEASE_LOST
    return params


def _message_id(s: SentPart) -> str | None:
    """The transport's message id for the part: the attempt row is where it is kept."""
    return s.message_id if s.message_id is not None else s.attempt.transport_message_id


def _ack_arrays(sent: list[SentPart], now: float) -> dict[str, Any]:
    """record_sent_batch's parameters: one array per column, one element per ack."""
    attempts = [s.attempt for s in sent]
    return {
        "ids": [s.lease.delivery_id for s in sent],
        "epochs": [s.lease.epoch for s in sent],
        "part_indexes": [s.part_index for s in sent],
        "attempts": [a.attempt for a in attempts],
        "outcomes": [a.outcome for a in attempts],
        "message_ids": [_message_id(s) for s in sent],
        "guids": [a.guid for a in attempts],
        "worker_ids": [a.worker_id for a in attempts],
        "started_at": [a.started_at for a in attempts],
        "latency_ms": [a.latency_ms for a in attempts],
        "errors": [a.error for a in attempts],
        "correlation_ids": [a.correlation_id for a in attempts],
        "now": now,
    }


FailureRow = dict[str, Any]  # a job_failures row, built by audit.record.to_row before the unit


def release(
    lease: Lease,
    *,
    delay_seconds: float,
    refund_attempt: bool,
    error: str | None,
    clear_in_flight: bool,
    attempt: AttemptRecord | None = None,
    failure: FailureRow | None = None,
) -> Unit[bool]:
    """Unit: give the delivery back to the queue, available after ``delay_seconds``.

    ``failure`` (the audit row of the failed attempt) is stored with it; if the lease was lost
    it is stored as ``LeaseLost`` instead and a ``lease_lost`` event explains why nothing moved.
    """

    def unit(tx: Tx) -> bool:
        now = time.time()
        released = (
            tx.execute(
                "release_delivery",
                {
                    "id": lease.delivery_id,
                    "epoch": lease.epoch,
                    "available_at": now + delay_seconds,
                    "refund": 1 if refund_attempt else 0,
                    "clear_in_flight": clear_in_flight,
                    "error": error,
                    "now": now,
                },
            )
            == 1
        )
        if attempt is not None:
            tx.execute("insert_attempt", attempt.params())
        _record_failure(tx, failure, released)
        if not released and (attempt is not None or failure is not None):
            _lease_lost(tx, lease, attempt, f"would have retried later: {error or '-'}", now)
        return released

    return unit


_FINAL_EVENTS = {
    Status.FAILED: EventKind.GAVE_UP,
    Status.UNKNOWN: EventKind.PARKED,
    Status.EXPIRED: EventKind.EXPIRED,
}


def finish(
    lease: Lease,
    status: Status,
    error: str,
    attempt: AttemptRecord | None = None,
    *,
    failure: FailureRow | None = None,
    by: str | None = None,
) -> Unit[bool]:
    """Unit: end the run in a final status (failed, expired or unknown).

    Writes, with the status, the ``gave_up``/``parked``/``expired`` event (by ``by``, default
    the attempt's worker) and the ``failure`` audit row. If the fenced write changed nothing
    (the lease was taken over), the event is ``lease_lost`` and the audit row says so.
    """
    if status not in _FINAL_EVENTS:
        raise ValueError(f"finish() does not lead to {status}")

    def unit(tx: Tx) -> bool:
        now = time.time()
        params = {
            "id": lease.delivery_id,
            "epoch": lease.epoch,
            "status": str(status),
            "error": error,
            "now": now,
        }
        done = tx.execute("finish_delivery", params) == 1
        if attempt is not None:
            tx.execute("insert_attempt", attempt.params())
        _record_failure(tx, failure, done)
        if not done:
            _lease_lost(tx, lease, attempt, f"would have been {status}: {error}", now, by)
            return False
        current = _load(tx, lease.delivery_id)
        record_event(
            tx,
            delivery_id=current.id,
            correlation_id=current.correlation_id,
            kind=_FINAL_EVENTS[status],
            actor=Actor(by or (attempt.worker_id if attempt else "worker")),
            from_status=str(Status.SENDING),
            to_status=str(status),
            run=current.run,
            detail=error,
            at=now,
        )
        return True

    return unit


def _record_failure(tx: Tx, failure: FailureRow | None, applied: bool) -> None:
    if failure is None:
        return
    if not applied:
        failure = {
            **failure,
            "error_type": "LeaseLost",
            "terminal": False,
            "message": "lease lost before this was recorded, so it was not applied"
            f" (another worker holds the delivery): {failure.get('message') or ''}",
        }
    insert_failure_within(tx, failure)


def _lease_lost(
    tx: Tx,
    lease: Lease,
    attempt: AttemptRecord | None,
    detail: str,
    now: float,
    by: str | None = None,
) -> None:
    row = tx.fetch_one("delivery_by_id", {"id": lease.delivery_id})
    if row is None:  # pruned meanwhile: nothing left to explain
        return
    current = Delivery.from_row(row)
    record_event(
        tx,
        delivery_id=current.id,
        correlation_id=current.correlation_id,
        kind=EventKind.LEASE_LOST,
        actor=Actor(by or (attempt.worker_id if attempt else "worker")),
        from_status=None,
        to_status=str(current.status),
        run=attempt.attempt if attempt else None,
        detail=f"lease epoch {lease.epoch} no longer held (now {current.status}, epoch"
        f" {current.lease_epoch}); {detail}",
        at=now,
    )


def cancel(
    delivery_id: int, reason: str = "cancelled by operator", *, by: Actor = API
) -> Unit[Delivery]:
    """Unit: cancel a queued (or sending) delivery; a worker holding it stops at its next write.

    Records a ``cancelled`` event by ``by`` in the same transaction.
    """

    def unit(tx: Tx) -> Delivery:
        before = _load(tx, delivery_id)
        now = time.time()
        if tx.execute("cancel_delivery", {"id": delivery_id, "now": now, "reason": reason}):
            after = _load(tx, delivery_id)
            record_event(
                tx,
                delivery_id=delivery_id,
                correlation_id=after.correlation_id,
                kind=EventKind.CANCELLED,
                actor=by,
                from_status=str(before.status),
                to_status=str(after.status),
                run=after.run,
                detail=reason,
                at=now,
            )
            return after
        current = _load(tx, delivery_id)
        raise InvalidState(
            f"delivery {delivery_id} is already {current.status}; only queued or sending"
            " deliveries can be cancelled"
        )

    return unit


def requeue(
    delivery_id: int,
    *,
    skip_parts: int = 0,
    reason: str,
    by: Actor = API,
    kind: EventKind = EventKind.RETRIED,
) -> Unit[Delivery]:
    """Unit (operator): send a failed, expired or parked delivery again from its cursor.

    ``skip_parts=1`` on an ``unknown`` delivery says "the ambiguous part did arrive". The
    attempt budget starts again, the run number keeps counting, and a ``kind`` event (by
    ``by``) is written in the same transaction. Prefer :func:`retry` and :func:`resolve`.
    """

    def unit(tx: Tx) -> Delivery:
        current = _load(tx, delivery_id)
        if current.start_index + skip_parts > current.part_count:
            raise InvalidState(f"delivery {delivery_id} has no part left to skip")
        now = time.time()
        params = {"id": delivery_id, "now": now, "skip_parts": skip_parts, "reason": reason}
        if tx.execute("requeue_delivery", params) == 1:
            if current.start_index + skip_parts == current.part_count:
                # every part is accounted for: nothing left to send
                tx.execute("finish_requeued_as_delivered", {"id": delivery_id, "now": now})
            after = _load(tx, delivery_id)
            record_event(
                tx,
                delivery_id=delivery_id,
                correlation_id=after.correlation_id,
                kind=kind,
                actor=by,
                from_status=str(current.status),
                to_status=str(after.status),
                run=current.run,
                detail=reason,
                at=now,
            )
            return after
        raise InvalidState(
            f"delivery {delivery_id} is {current.status}; only failed, unknown or expired"
            " deliveries can be sent again"
        )

    return unit


def retry(delivery_id: int, *, by: Actor, note: str | None = None) -> Unit[Delivery]:
    """Unit (operator): send a failed, expired or parked delivery again, from its cursor."""
    reason = f"retried by {by.who}" + (f": {note}" if note else "")
    return requeue(delivery_id, reason=reason, by=by, kind=EventKind.RETRIED)


def resolve(
    delivery_id: int, *, arrived: bool, by: Actor, note: str | None = None
) -> Unit[Delivery]:
    """Unit (operator): settle a parked (``unknown``) delivery, then continue.

    ``arrived=True``: the ambiguous part reached the user, continue after it;
    ``arrived=False``: it did not, send it again (same GUID).
    """
    what = "arrived" if arrived else "did not arrive"
    reason = f"resolved by {by.who}: ambiguous part {what}" + (f"; {note}" if note else "")
    requeued = requeue(
        delivery_id,
        skip_parts=1 if arrived else 0,
        reason=reason,
        by=by,
        kind=EventKind.RESOLVED,
    )

    def unit(tx: Tx) -> Delivery:
        current = _load(tx, delivery_id)
        if current.status is not Status.UNKNOWN:
            raise InvalidState(
                f"delivery {delivery_id} is {current.status}, not unknown; nothing to resolve"
            )
        return requeued(tx)

    return unit


def expire_stale(
    now: float | None = None,
    *,
    by: str = "expirer",
    failure_of: Callable[[Delivery], FailureRow | None] | None = None,
) -> Unit[list[dict[str, Any]]]:
    """Unit: expire queued replies past their max age; returns the expired rows.

    Each gets an ``expired`` event (by ``by``) and, with ``failure_of``, its audit row, in
    the same transaction.
    """

    def unit(tx: Tx) -> list[dict[str, Any]]:
        at = time.time() if now is None else now
        rows = tx.fetch_all("expire_stale_queued", {"now": at})
        for row in rows:
            delivery_id = int(row["id"])
            record_event(
                tx,
                delivery_id=delivery_id,
                correlation_id=row["correlation_id"],
                kind=EventKind.EXPIRED,
                actor=Actor(by),
                from_status=str(Status.QUEUED),
                to_status=str(Status.EXPIRED),
                run=int(row["runs_before"] or 0) + int(row["attempts"]),
                detail="older than the channel's max age before it could be sent",
                at=at,
            )
            if failure_of is not None:
                failure = failure_of(get_delivery(delivery_id)(tx))
                if failure is not None:
                    insert_failure_within(tx, failure)
        return rows

    return unit


def _load(tx: Tx, delivery_id: int) -> Delivery:
    row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    return Delivery.from_row(row)
