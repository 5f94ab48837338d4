"""Every state change of a step, in one place: each is a unit of work with one guarded write.

Runs are fenced by ``(id, lease_epoch)``: every claim bumps the epoch, so a run whose lease
lapsed and was taken over finds that its writes change nothing. Each change also appends one
row to ``step_events`` in the same transaction, so the journal and the state never disagree.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relaybox.errors import InvalidState, NotFound
from relaybox.outbox.enqueue import EnqueueUnit, ReplyRequest
from relaybox.outbox.guid import store_identity
from relaybox.steps.errors import StepLeaseLost
from relaybox.steps.intent import Intent
from relaybox.steps.records import FINAL_STATUSES, StepRecord, StepStatus
from relaybox.store import Tx
from relaybox.store.base import Unit, locking

MAX_INTENT_CHARS = 65_536  # the stored copy of the intent, for operators; the hash covers all


@dataclass(frozen=True)
class StepRequest:
    """A validated call to run a step."""

    resource_id: str
    step_id: str
    intent: Intent
    correlation_id: str
    retry_safe: bool
    new_step: bool
    owner: str
    lease_seconds: float


@dataclass(frozen=True)
class Lease:
    """Proof that this run holds a step."""

    step_pk: int
    epoch: int


# What a claim found; the runner acts on it.
@dataclass(frozen=True)
class Claimed:
    record: StepRecord  # this run holds the lease: run the body


@dataclass(frozen=True)
class Replay:
    record: StepRecord  # a stored outcome: return it, do not run the body


@dataclass(frozen=True)
class Busy:
    record: StepRecord  # another run holds a live lease


@dataclass(frozen=True)
class Mismatch:
    record: StepRecord  # the step id was used with another intent


@dataclass(frozen=True)
class Flagged:
    record: StepRecord  # needs reconciliation
    newly: bool  # this claim is the one that found the crash


Decision = Claimed | Replay | Busy | Mismatch | Flagged


def idempotency_key(
    resource_id: str, step_id: str, generation: int, intent_hash: str, store_id: str
) -> str:
    """The key a step body passes to downstream APIs: same step and intent, same key.

    The store's identity is part of it: two stores (two bots, staging and production, a store
    re-created after a reset) running the same step id for the same user must not have their
    payments deduplicated against each other by the provider. The key is stored with the step,
    so it never changes for a step that exists. Replies staged by the step derive their reply
    keys from it, so they are unique across stores too.
    """
    material = json.dumps(
        [resource_id, step_id, generation, intent_hash, store_id], ensure_ascii=False
    )
    return "rbx-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:48]


def claim(request: StepRequest) -> Unit[Decision]:
    """Unit: decide what this run of a step does, and take the lease if it runs the body."""

    def unit(tx: Tx) -> Decision:
        now = time.time()
        row = tx.fetch_one("insert_step", _fresh(tx, request, 1, now))
        if row is not None:
            record = StepRecord.from_row(row)
            _event(tx, record, request.correlation_id, "started", request.owner, now)
            return Claimed(record)
        found = tx.fetch_one(
            "lock_step", {"resource_id": request.resource_id, "step_id": request.step_id}
        )
        if found is None:  # pragma: no cover - the conflicting row cannot vanish while locked
            raise InvalidState(f"step {request.step_id!r} conflicted but was not found")
        return _decide(tx, StepRecord.from_row(found), request, now)

    # The step's row lock (insert or FOR UPDATE): batches take step locks in key order.
    return locking(f"steps\x1f{request.resource_id}\x1f{request.step_id}", unit)


def _decide(tx: Tx, record: StepRecord, request: StepRequest, now: float) -> Decision:
    correlation, owner = request.correlation_id, request.owner
    if record.outcome_expired(now):
        note = f"the stored {record.status} outcome expired; running afresh"
        return Claimed(_restart(tx, record, request, record.generation, now, note))
    if record.intent_hash != request.intent.hash:
        if not request.new_step:
            detail = (
                f"stored intent {record.intent_hash[:12]} (tool {record.tool}),"
                f" called with {request.intent.hash[:12]} (tool {request.intent.tool})"
            )
            _event(tx, record, correlation, "intent_mismatch", owner, now, detail)
            return Mismatch(record)
        if record.status is StepStatus.RUNNING and not record.lease_lapsed(now):
            return Busy(record)
        note = f"replaced generation {record.generation} ({record.status}) with a new intent"
        return Claimed(_restart(tx, record, request, record.generation + 1, now, note))
    if record.status in FINAL_STATUSES:
        _event(tx, record, correlation, "replayed", owner, now, f"stored {record.status}")
        return Replay(record)
    if record.status is StepStatus.NEEDS_RECONCILIATION:
        return Flagged(record, newly=False)
    if record.status is StepStatus.PENDING:
        note = f"after a retryable error: {record.error_type}"
        return Claimed(_reclaim(tx, record, request, now, note))
    if not record.lease_lapsed(now):
        return Busy(record)
    # The crash belongs to the run that stopped: journal it under that run's correlation id,
    # so a trace of the original inbound message shows it.
    stopped = f"run {record.attempts} by {record.lease_owner} stopped without an outcome"
    if record.retry_safe:
        _event(
            tx, record, record.correlation_id, "lease_lapsed", owner, now, stopped + "; retry-safe"
        )
        return Claimed(_reclaim(tx, record, request, now, "after a lapsed lease"))
    flagged = tx.fetch_one(
        "flag_step_for_reconciliation",
        {
            "id": record.id,
            "epoch": record.lease_epoch,
            "now": now,
            "error_type": "StepNeedsReconciliation",
            "error_message": stopped + "; not retry-safe: did its side effect happen?",
        },
    )
    assert flagged is not None  # the row is locked and was running at this epoch
    flagged_record = StepRecord.from_row(flagged)
    _event(tx, flagged_record, record.correlation_id, "needs_reconciliation", owner, now, stopped)
    return Flagged(flagged_record, newly=True)


def _reclaim(tx: Tx, record: StepRecord, request: StepRequest, now: float, note: str) -> StepRecord:
    row = tx.fetch_one(
        "reclaim_step",
        {
            "id": record.id,
            "epoch": record.lease_epoch,
            "owner": request.owner,
            "lease_until": now + request.lease_seconds,
            "now": now,
        },
    )
    assert row is not None  # the row is locked and at this epoch
    claimed = StepRecord.from_row(row)
    _event(tx, claimed, request.correlation_id, "started", request.owner, now, note)
    return claimed


def _restart(
    tx: Tx, record: StepRecord, request: StepRequest, generation: int, now: float, note: str
) -> StepRecord:
    params = _fresh(tx, request, generation, now)
    params.update({"id": record.id, "epoch": record.lease_epoch, "generation": generation})
    row = tx.fetch_one("restart_step", params)
    assert row is not None  # the row is locked and at this epoch
    claimed = StepRecord.from_row(row)
    _event(tx, claimed, request.correlation_id, "started", request.owner, now, note)
    return claimed


def _fresh(tx: Tx, request: StepRequest, generation: int, now: float) -> dict[str, Any]:
    intent = request.intent
    return {
        "resource_id": request.resource_id,
        "step_id": request.step_id,
        "tool": intent.tool,
        "intent_hash": intent.hash,
        "intent_json": _capped(intent.canonical_json),
        "idempotency_key": idempotency_key(
            request.resource_id, request.step_id, generation, intent.hash, store_identity(tx)
        ),
        "correlation_id": request.correlation_id,
        "retry_safe": 1 if request.retry_safe else 0,
        "owner": request.owner,
        "lease_until": now + request.lease_seconds,
        "now": now,
    }


def _capped(text: str) -> str:
    if len(text) <= MAX_INTENT_CHARS:
        return text
    return text[:MAX_INTENT_CHARS] + f"... [{len(text)} characters, cut for storage]"


def renew(lease: Lease, lease_seconds: float) -> Unit[bool]:
    """Unit: extend this run's lease; False if the lease was lost."""

    def unit(tx: Tx) -> bool:
        params = {
            "id": lease.step_pk,
            "epoch": lease.epoch,
            "lease_until": time.time() + lease_seconds,
        }
        return tx.execute("renew_step_lease", params) == 1

    return unit


@dataclass(frozen=True)
class Outcome:
    """What a run stores: a result, or an error (failed / timed_out)."""

    status: StepStatus
    result_json: str | None = None
    error_type: str | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATUSES:
            raise ValueError(f"an outcome cannot be {self.status}")


def finish(
    lease: Lease,
    outcome: Outcome,
    *,
    retention_seconds: float,
    correlation_id: str,
    worker: str,
    replies: Sequence[ReplyRequest] = (),
) -> Unit[StepRecord]:
    """Unit: store the outcome and enqueue the replies, in one transaction (or neither).

    Raises :class:`StepLeaseLost` (rolling the whole unit back) if another run took the step.
    """

    def unit(tx: Tx) -> StepRecord:
        now = time.time()
        row = tx.fetch_one(
            "finish_step",
            {
                "id": lease.step_pk,
                "epoch": lease.epoch,
                "status": str(outcome.status),
                "result_json": outcome.result_json,
                "error_type": outcome.error_type,
                "error_message": outcome.error_message,
                "reply_delivery_ids": None,
                "now": now,
                "expires_at": now + retention_seconds,
            },
        )
        if row is None:
            raise StepLeaseLost(
                f"step row {lease.step_pk}: another run took this step over before the outcome"
                " was stored; nothing was recorded"
            )
        record = StepRecord.from_row(row)
        if replies:
            ids = [EnqueueUnit(reply, now)(tx).delivery.id for reply in replies]
            tx.execute("set_step_replies", {"id": record.id, "ids": json.dumps(ids)})
            record = StepRecord.from_row({**row, "reply_delivery_ids": json.dumps(ids)})
        detail = outcome.error_type if outcome.error_type else None
        if outcome.error_message:
            detail = f"{detail}: {outcome.error_message}"
        if replies:
            detail = ((detail + "; ") if detail else "") + f"replies {record.reply_delivery_ids}"
        _event(tx, record, correlation_id, str(outcome.status), worker, now, detail)
        return record

    return unit


def release(
    lease: Lease,
    *,
    error_type: str,
    error_message: str,
    event: str,
    correlation_id: str,
    worker: str,
) -> Unit[bool]:
    """Unit: no outcome to store (a retryable error, a safe timeout): the next run runs again."""

    def unit(tx: Tx) -> bool:
        now = time.time()
        params = {
            "id": lease.step_pk,
            "epoch": lease.epoch,
            "error_type": error_type,
            "error_message": error_message,
            "now": now,
        }
        if tx.execute("release_step", params) != 1:
            return False
        record = _load(tx, lease.step_pk)
        _event(tx, record, correlation_id, event, worker, now, f"{error_type}: {error_message}")
        return True

    return unit


def interrupt(lease: Lease, *, reason: str, correlation_id: str, worker: str) -> Unit[bool]:
    """Unit: the run was cancelled mid-way; the next claim applies the crash policy at once."""

    def unit(tx: Tx) -> bool:
        now = time.time()
        if tx.execute("lapse_step_lease", {"id": lease.step_pk, "epoch": lease.epoch, "now": now}):
            _event(tx, _load(tx, lease.step_pk), correlation_id, "interrupted", worker, now, reason)
            return True
        return False

    return unit


def note(
    step_pk: int, event: str, *, correlation_id: str, worker: str, detail: str | None = None
) -> Unit[None]:
    """Unit: journal something that changed no state (a wait timed out, a fail-fast refusal)."""

    def unit(tx: Tx) -> None:
        _event(tx, _load(tx, step_pk), correlation_id, event, worker, time.time(), detail)

    return unit


def resolve(
    step_pk: int,
    outcome: Outcome | None,
    *,
    retention_seconds: float,
    reason: str,
    operator: str = "operator",
) -> Unit[StepRecord]:
    """Unit (operator): settle a step that needs reconciliation.

    ``outcome`` says what really happened (it is stored and replayed from now on); ``None``
    means "the side effect did not happen: run it again" (the step becomes pending).
    """

    def unit(tx: Tx) -> StepRecord:
        now = time.time()
        current = _load(tx, step_pk)
        params = {
            "id": step_pk,
            "now": now,
            "status": str(outcome.status) if outcome else str(StepStatus.PENDING),
            "result_json": outcome.result_json if outcome else None,
            "error_type": outcome.error_type if outcome else None,
            "error_message": outcome.error_message if outcome else None,
            "finished_at": now if outcome else None,
            "expires_at": now + retention_seconds if outcome else None,
        }
        row = tx.fetch_one("resolve_step", params)
        if row is None:
            raise InvalidState(
                f"step {step_pk} is {current.status}; only steps needing reconciliation can be"
                " resolved"
            )
        record = StepRecord.from_row(row)
        what = f"resolved as {record.status}" + (f": {reason}" if reason else "")
        _event(tx, record, current.correlation_id, "resolved", operator, now, what)
        return record

    return unit


def _load(tx: Tx, step_pk: int) -> StepRecord:
    row = tx.fetch_one("step_by_pk", {"id": step_pk})
    if row is None:
        raise NotFound(f"step {step_pk} does not exist")
    return StepRecord.from_row(row)


def _event(
    tx: Tx,
    record: StepRecord,
    correlation_id: str,
    event: str,
    worker: str | None,
    now: float,
    detail: str | None = None,
) -> None:
    tx.execute(
        "insert_step_event",
        {
            "step_pk": record.id,
            "resource_id": record.resource_id,
            "step_id": record.step_id,
            "correlation_id": correlation_id,
            "event": event,
            "attempt": record.attempts,
            "worker": worker,
            "now": now,
            "detail": detail,
        },
    )


def prune_expired(batch_size: int, now: float | None = None) -> Unit[int]:
    """Unit (retention): forget up to ``batch_size`` outcomes past their expiry, with events.

    Steps needing reconciliation, running or pending have no expiry and are never pruned.
    """

    def unit(tx: Tx) -> int:
        at = time.time() if now is None else now
        return tx.execute("prune_expired_steps", {"now": at, "limit": batch_size})

    return unit
