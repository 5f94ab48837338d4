"""Every state change of a delivery, in one place, each one guarded write.

Worker-side transitions are fenced by ``(id, lease_epoch)``: a worker whose lease lapsed and
was taken over by another finds that its write changed no row, and stops. Operator-side
transitions (cancel, requeue) are guarded by the statuses they apply to.

    queued --claim--> sending --advance (last part)--> delivered
                        |  \\--release (retry later, wait, shutdown)--> queued
                        \\--finish--> failed | expired | unknown
    queued|sending --cancel--> cancelled          (supersede: queued, not started)
    failed|unknown|expired --requeue (operator)--> queued
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from relaybox.errors import InvalidState, NotFound
from relaybox.models import Delivery, Part, Status
from relaybox.store import Tx
from relaybox.store.base import Unit


@dataclass(frozen=True)
class Lease:
    """Proof that this worker holds a delivery: its fencing token."""

    delivery_id: int
    epoch: int


@dataclass(frozen=True)
class AttemptRecord:
    """One append-only row of ``delivery_attempts``."""

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
    worker_id: str, channels: list[str], limit: int, lease_seconds: float
) -> Unit[list[Delivery]]:
    """Unit: claim up to ``limit`` thread heads; returns deliveries with their unsent parts."""

    def unit(tx: Tx) -> list[Delivery]:
        now = time.time()
        params = {
            "worker_id": worker_id,
            "channels": channels,
            "limit": limit,
            "now": now,
            "lease_until": now + lease_seconds,
        }
        # Two statements: the first picks thread heads (on PostgreSQL it also locks their
        # threads), the second re-checks them under those locks and takes them.
        heads = [int(r["id"]) for r in tx.fetch_all("claimable_heads", params)]
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


@dataclass(frozen=True)
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
        return many(tx)[0]

    return unit


def record_sent_many(sent: list[SentPart]) -> Unit[list[bool]]:
    """Unit: :func:`record_sent` for many deliveries at once (at most one part each).

    A worker records the parts its deliveries had acknowledged meanwhile together (see
    ``worker/acks.py``). Each part's result is exactly what :func:`record_sent` would have
    returned for it alone. PostgreSQL does it all in one statement (one round trip);
    SQLite, in process, one fenced update per cursor and one batched call for the rest.
    """
    if len({s.lease.delivery_id for s in sent}) != len(sent):
        raise ValueError("record_sent_many takes at most one part per delivery")

    def unit(tx: Tx) -> list[bool]:
        now = time.time()
        if tx.network_round_trips:
            moved = {
                int(r["id"]) for r in tx.fetch_all("record_sent_batch", _ack_arrays(sent, now))
            }
            return [s.lease.delivery_id in moved for s in sent]
        results = [_advance_cursor(tx, s, now) for s in sent]
        tx.execute_many(
            "insert_attempt",
            [_attempt_params(s, moved) for s, moved in zip(sent, results, strict=True)],
        )
        return results

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


_LEASE_LOST = "lease lost: cursor not advanced"  # also in postgres/outbox.sql record_sent_batch


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


def release(
    lease: Lease,
    *,
    delay_seconds: float,
    refund_attempt: bool,
    error: str | None,
    clear_in_flight: bool,
    attempt: AttemptRecord | None = None,
) -> Unit[bool]:
    """Unit: give the delivery back to the queue, available after ``delay_seconds``."""

    def unit(tx: Tx) -> bool:
        now = time.time()
        released = tx.execute(
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
        if attempt is not None:
            tx.execute("insert_attempt", attempt.params())
        return released == 1

    return unit


def finish(
    lease: Lease, status: Status, error: str, attempt: AttemptRecord | None = None
) -> Unit[bool]:
    """Unit: end the run in a final status (failed, expired or unknown)."""
    if status not in (Status.FAILED, Status.EXPIRED, Status.UNKNOWN):
        raise ValueError(f"finish() does not lead to {status}")

    def unit(tx: Tx) -> bool:
        params = {
            "id": lease.delivery_id,
            "epoch": lease.epoch,
            "status": str(status),
            "error": error,
            "now": time.time(),
        }
        done = tx.execute("finish_delivery", params) == 1
        if attempt is not None:
            tx.execute("insert_attempt", attempt.params())
        return done

    return unit


def cancel(delivery_id: int, reason: str = "cancelled by operator") -> Unit[Delivery]:
    """Unit: cancel a queued (or sending) delivery; a worker holding it stops at its next write."""

    def unit(tx: Tx) -> Delivery:
        if tx.execute("cancel_delivery", {"id": delivery_id, "now": time.time(), "reason": reason}):
            return _load(tx, delivery_id)
        current = _load(tx, delivery_id)
        raise InvalidState(
            f"delivery {delivery_id} is already {current.status}; only queued or sending"
            " deliveries can be cancelled"
        )

    return unit


def requeue(delivery_id: int, *, skip_parts: int = 0, reason: str) -> Unit[Delivery]:
    """Unit (operator): send a failed, expired or parked delivery again from its cursor.

    ``skip_parts=1`` on an ``unknown`` delivery says "the ambiguous part did arrive".
    """

    def unit(tx: Tx) -> Delivery:
        current = _load(tx, delivery_id)
        if current.start_index + skip_parts > current.part_count:
            raise InvalidState(f"delivery {delivery_id} has no part left to skip")
        params = {"id": delivery_id, "now": time.time(), "skip_parts": skip_parts, "reason": reason}
        if tx.execute("requeue_delivery", params) == 1:
            if current.start_index + skip_parts == current.part_count:
                # every part is accounted for: nothing left to send
                tx.execute("finish_requeued_as_delivered", {"id": delivery_id, "now": time.time()})
            return _load(tx, delivery_id)
        raise InvalidState(
            f"delivery {delivery_id} is {current.status}; only failed, unknown or expired"
            " deliveries can be sent again"
        )

    return unit


def expire_stale(now: float | None = None) -> Unit[list[dict[str, Any]]]:
    """Unit: expire queued replies past their max age; returns the expired rows."""

    def unit(tx: Tx) -> list[dict[str, Any]]:
        return tx.fetch_all("expire_stale_queued", {"now": time.time() if now is None else now})

    return unit


def _load(tx: Tx, delivery_id: int) -> Delivery:
    row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    return Delivery.from_row(row)
