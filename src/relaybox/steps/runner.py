"""Run a tool step once, however often the agent is retried (spec C5).

``StepRunner.run`` claims the step (``steps`` row keyed by resource + step id), runs the body
while renewing a lease, and stores the outcome before returning it. A repeat finds the stored
outcome and returns it without running the body; a concurrent duplicate waits for it (or
fails fast); a run that died mid-way is run again after its lease lapses only if the step is
declared retry-safe, and is otherwise flagged for an operator. See docs/steps.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from relaybox import validation
from relaybox.config import Config
from relaybox.errors import RelayboxError, StoreUnavailable
from relaybox.jsonvalue import NotJSON, dumps
from relaybox.observability import tracing
from relaybox.steps import transitions as t
from relaybox.steps.audit import report_step_failure
from relaybox.steps.context import StepContext
from relaybox.steps.current import running
from relaybox.steps.errors import (
    InvalidStep,
    RetryableStepError,
    StepFailed,
    StepInProgress,
    StepIntentMismatch,
    StepLeaseLost,
    StepNeedsReconciliation,
    StepTimedOut,
    StepWaitTimeout,
)
from relaybox.steps.intent import Intent
from relaybox.steps.records import StepRecord, StepStatus
from relaybox.store import Store, Tx
from relaybox.store.conflicts import run_retrying

log = logging.getLogger("relaybox.steps")

MAX_ID_CHARS = 512
Body = Callable[[StepContext], Awaitable[Any]]
IfRunning = Literal["wait", "fail"]


@dataclass(frozen=True)
class StepResult:
    """The outcome of a step: the body's value (as stored JSON) and how it was obtained."""

    value: Any
    replayed: bool  # True: a stored outcome, the body did not run now
    record: StepRecord

    @property
    def key(self) -> str:
        return self.record.idempotency_key

    @property
    def delivery_ids(self) -> tuple[int, ...]:
        """Replies enqueued in the same transaction as the outcome."""
        return self.record.reply_delivery_ids


@dataclass(frozen=True)
class StepPolicy:
    """How a step behaves when things go wrong (all optional)."""

    retry_safe: bool = False  # may run again after a crash/timeout (downstream dedups by key)
    retryable: tuple[type[BaseException], ...] = ()  # errors meaning "no effect, try again"
    timeout: float | None = None  # seconds; past it the run's outcome is "timed out"
    if_running: IfRunning = "wait"  # a concurrent duplicate waits, or fails fast
    wait_timeout: float | None = None  # default: [steps] wait_timeout_seconds
    # "ask the model again" signals: not stored, not audited, the step stays open (pending).
    # Framework control-flow exceptions (CONTROL_FLOW) are always treated so.
    not_outcomes: tuple[type[BaseException], ...] = ()


# Exceptions a framework raises from a tool to steer the run, not to report what the tool
# did: pydantic-ai's ModelRetry asks the model for other arguments, CallDeferred and
# ApprovalRequired say the tool has not run yet. Storing them as the outcome would replay
# "retry" forever, so they leave the step open instead. Matched by name: no framework import.
CONTROL_FLOW = frozenset(
    {
        "pydantic_ai.exceptions.ModelRetry",
        "pydantic_ai.exceptions.CallDeferred",
        "pydantic_ai.exceptions.ApprovalRequired",
    }
)


def is_control_flow(error: BaseException, policy: StepPolicy | None = None) -> bool:
    """Whether ``error`` steers the agent run rather than being a tool outcome."""
    if policy is not None and isinstance(error, policy.not_outcomes):
        return True
    return any(
        f"{kind.__module__}.{kind.__qualname__}" in CONTROL_FLOW for kind in type(error).__mro__
    )


class StepRunner:
    """Runs steps against one store; ``rb.step(...)`` uses the client's runner."""

    def __init__(self, store: Store, config: Config, *, owner: str | None = None) -> None:
        self.store = store
        self.config = config
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def run(
        self,
        step_id: str,
        intent: Intent,
        body: Body,
        *,
        resource_id: str,
        correlation_id: str | None = None,
        policy: StepPolicy | None = None,
        new_step: bool = False,
    ) -> StepResult:
        """Run ``body`` once for (``resource_id``, ``step_id``) and this ``intent``.

        Raises :class:`StepIntentMismatch` if the step id was used with another intent (pass
        ``new_step=True`` to replace it), :class:`StepFailed` / :class:`StepTimedOut` for a
        stored error outcome, :class:`StepInProgress` / :class:`StepWaitTimeout` for a
        concurrent run, :class:`StepNeedsReconciliation` for a crashed unsafe run, and the
        body's own error when it is retryable.
        """
        tool = intent.tool if isinstance(intent, Intent) else "?"  # refused in _run
        with tracing.step_span(step_id, tool, correlation_id):
            return await self._run(
                step_id,
                intent,
                body,
                resource_id=resource_id,
                correlation_id=correlation_id,
                policy=policy,
                new_step=new_step,
            )

    async def _run(
        self,
        step_id: str,
        intent: Intent,
        body: Body,
        *,
        resource_id: str,
        correlation_id: str | None,
        policy: StepPolicy | None,
        new_step: bool,
    ) -> StepResult:
        policy = _check_policy(policy or StepPolicy())
        request = self._request(
            step_id, intent, body, resource_id, correlation_id, new_step, policy
        )
        wait = policy.wait_timeout or self.config.steps.wait_timeout_seconds
        deadline = time.monotonic() + wait
        while True:
            decision = await run_retrying(self.store, t.claim(request))
            if isinstance(decision, t.Claimed):
                return await self._execute(request, decision.record, body, policy)
            if isinstance(decision, t.Replay):
                return _replay(decision.record)
            if isinstance(decision, t.Mismatch):
                raise _mismatch(decision.record, request)
            if isinstance(decision, t.Flagged):
                if decision.newly:
                    await self._audit(
                        decision.record,
                        decision.record.error_message or "stopped without an outcome",
                        "needs_reconciliation",
                        decision.record.correlation_id,
                        terminal=True,
                        error_type="StepNeedsReconciliation",
                    )
                raise _needs_reconciliation(decision.record)
            busy = decision.record
            if policy.if_running == "fail":
                await self._note(busy, "in_progress", request, f"held by {busy.lease_owner}")
                raise StepInProgress(
                    f"step {busy.step_id!r} of {busy.resource_id!r} is running now (attempt"
                    f" {busy.attempts}, held by {busy.lease_owner}); try again later"
                )
            await self._wait_while_busy(busy, request, deadline, wait)

    # -- running the body -------------------------------------------------------------

    async def _execute(
        self, request: t.StepRequest, record: StepRecord, body: Body, policy: StepPolicy
    ) -> StepResult:
        lease = t.Lease(record.id, record.lease_epoch)
        context = StepContext(
            step_id=record.step_id,
            resource_id=record.resource_id,
            key=record.idempotency_key,
            attempt=record.attempts,
            correlation_id=request.correlation_id,
            intent=request.intent,
            config=self.config,
        )
        keeper = asyncio.create_task(self._keep_lease(lease, record))
        timer: asyncio.Timeout | None = None
        try:
            with running(context):  # relaybox.current_step() inside the body
                if policy.timeout is None:
                    value = await body(context)
                else:
                    async with asyncio.timeout(policy.timeout) as timer:
                        value = await body(context)
        except TimeoutError as error:
            if timer is not None and timer.expired():
                return await self._timed_out(request, record, lease, policy, error)
            return await self._failed(request, record, lease, policy, error)
        except Exception as error:  # noqa: BLE001 - every body error is stored or released
            return await self._failed(request, record, lease, policy, error)
        except BaseException:
            # Cancelled (shutdown) or interrupted: the side effect may be half done. Let the
            # next claim apply the crash policy at once instead of after the lease.
            self._interrupt(lease, request)
            raise
        finally:
            keeper.cancel()
        return await self._succeeded(request, record, lease, value, context)

    async def _succeeded(
        self,
        request: t.StepRequest,
        record: StepRecord,
        lease: t.Lease,
        value: Any,
        context: StepContext,
    ) -> StepResult:
        try:
            result_json = dumps(value, "step result")
        except NotJSON as error:
            # The side effect happened: store a failed outcome so it never runs again.
            outcome = t.Outcome(StepStatus.FAILED, None, "InvalidStepResult", str(error))
            return await self._store_error(request, record, lease, outcome, error)
        outcome = t.Outcome(StepStatus.SUCCEEDED, result_json)
        try:
            stored = await self._finish(lease, outcome, request, context.replies)
        except StepLeaseLost as lost:
            await self._audit(record, lost, "lease_lost", request.correlation_id, terminal=True)
            raise
        except RelayboxError as error:
            if isinstance(error, StoreUnavailable):
                raise
            # A staged reply could not be enqueued (e.g. its reply key was used for other
            # content): store the step as failed, without the reply, rather than leave it open.
            message = f"the step ran, but its reply could not be enqueued: {error}"
            failed = t.Outcome(StepStatus.FAILED, None, type(error).__name__, message)
            return await self._store_error(request, record, lease, failed, error)
        return StepResult(stored.result, replayed=False, record=stored)

    async def _failed(
        self,
        request: t.StepRequest,
        record: StepRecord,
        lease: t.Lease,
        policy: StepPolicy,
        error: Exception,
    ) -> StepResult:
        if is_control_flow(error, policy):
            # Not an outcome and not a failure: leave the step open, say so in its journal.
            await run_retrying(
                self.store,
                t.release(
                    lease,
                    error_type=_qualname(error),
                    error_message=_message(error),
                    event="not_an_outcome",
                    correlation_id=request.correlation_id,
                    worker=self.owner,
                ),
            )
            raise error
        if isinstance(error, (RetryableStepError, *policy.retryable)):
            released = await run_retrying(
                self.store,
                t.release(
                    lease,
                    error_type=type(error).__name__,
                    error_message=_message(error),
                    event="retryable_error",
                    correlation_id=request.correlation_id,
                    worker=self.owner,
                ),
            )
            if not released:
                log.warning("step %s: lease lost before a retryable error was noted", record.id)
            await self._audit(record, error, "retryable_error", request.correlation_id, False)
            raise error
        outcome = t.Outcome(StepStatus.FAILED, None, _qualname(error), _message(error))
        return await self._store_error(request, record, lease, outcome, error)

    async def _timed_out(
        self,
        request: t.StepRequest,
        record: StepRecord,
        lease: t.Lease,
        policy: StepPolicy,
        error: TimeoutError,
    ) -> StepResult:
        message = f"the step ran past its {policy.timeout}s timeout"
        if policy.retry_safe:
            await run_retrying(
                self.store,
                t.release(
                    lease,
                    error_type="StepTimedOut",
                    error_message=message,
                    event="timed_out",
                    correlation_id=request.correlation_id,
                    worker=self.owner,
                ),
            )
            await self._audit(
                record, message, "timed_out", request.correlation_id, False, "StepTimedOut"
            )
            raise StepTimedOut(
                f"step {record.step_id!r} of {record.resource_id!r}: {message}; it is"
                " retry-safe, so the next run tries again with the same key",
                timeout=policy.timeout,
                replayed=False,
            ) from error
        outcome = t.Outcome(StepStatus.TIMED_OUT, None, "StepTimedOut", message)
        return await self._store_error(request, record, lease, outcome, error)

    async def _store_error(
        self,
        request: t.StepRequest,
        record: StepRecord,
        lease: t.Lease,
        outcome: t.Outcome,
        error: BaseException,
    ) -> StepResult:
        try:
            stored = await self._finish(lease, outcome, request, ())
        except StepLeaseLost as lost:
            await self._audit(record, lost, "lease_lost", request.correlation_id, terminal=True)
            raise lost from error
        stage = "timed_out" if outcome.status is StepStatus.TIMED_OUT else "failed"
        await self._audit(stored, error, stage, request.correlation_id, True, outcome.error_type)
        raise _stored_error(stored, replayed=False) from error

    async def _finish(
        self,
        lease: t.Lease,
        outcome: t.Outcome,
        request: t.StepRequest,
        replies: tuple[Any, ...],
    ) -> StepRecord:
        unit = t.finish(
            lease,
            outcome,
            retention_seconds=self.config.steps.retention_seconds,
            correlation_id=request.correlation_id,
            worker=self.owner,
            replies=replies,
        )
        return await run_retrying(self.store, unit)

    # -- leases, waiting, journal -----------------------------------------------------

    async def _keep_lease(self, lease: t.Lease, record: StepRecord) -> None:
        seconds = self.config.steps.lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            try:
                kept = await self.store.run(t.renew(lease, seconds))
            except Exception as error:  # noqa: BLE001 - logged; the fenced outcome write decides
                log.warning("step %s: renewing the lease failed: %s", record.id, error)
                continue
            if not kept:
                log.warning(
                    "step %s (%s) lost its lease while running; its outcome will not be stored",
                    record.id,
                    record.step_id,
                )
                return

    async def _wait_while_busy(
        self, busy: StepRecord, request: t.StepRequest, deadline: float, wait: float
    ) -> None:
        """Poll (reads only) until the running step finishes, its lease lapses, or we give up."""
        poll = self.config.steps.poll_interval_seconds
        key = {"resource_id": busy.resource_id, "step_id": busy.step_id}
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self._note(busy, "wait_timed_out", request, f"waited {wait}s")
                raise StepWaitTimeout(
                    f"step {busy.step_id!r} of {busy.resource_id!r} was still running after"
                    f" waiting {wait}s (held by {busy.lease_owner}); try again later"
                )
            await asyncio.sleep(min(poll, remaining))
            current = await self.store.read(_read_step(key))
            now = time.time()
            if current is None or current.status is not StepStatus.RUNNING:
                return
            if current.lease_lapsed(now) or current.lease_epoch != busy.lease_epoch:
                return
            poll = min(poll * 1.5, 0.5)

    def _interrupt(self, lease: t.Lease, request: t.StepRequest) -> None:
        unit = t.interrupt(
            lease,
            reason="the run was cancelled before it stored an outcome",
            correlation_id=request.correlation_id,
            worker=self.owner,
        )
        try:
            future = self.store.submit(unit)
        except StoreUnavailable as error:
            log.warning("step row %s: could not note the interruption: %s", lease.step_pk, error)
            return
        future.add_done_callback(_log_failure(lease.step_pk))

    async def _note(
        self, record: StepRecord, event: str, request: t.StepRequest, detail: str
    ) -> None:
        unit = t.note(
            record.id,
            event,
            correlation_id=request.correlation_id,
            worker=self.owner,
            detail=detail,
        )
        await self.store.run(unit)

    async def _audit(
        self,
        record: StepRecord,
        error: BaseException | str,
        stage: str,
        correlation_id: str,
        terminal: bool,
        error_type: str | None = None,
    ) -> None:
        await report_step_failure(
            self.store,
            self.config.audit,
            record,
            error,
            stage=stage,
            correlation_id=correlation_id,
            worker=self.owner,
            terminal=terminal,
            error_type=error_type,
        )

    def _request(
        self,
        step_id: str,
        intent: Intent,
        body: Body,
        resource_id: str,
        correlation_id: str | None,
        new_step: bool,
        policy: StepPolicy,
    ) -> t.StepRequest:
        if not isinstance(intent, Intent):
            raise InvalidStep(f"a step needs an Intent, not {type(intent).__name__}")
        if not callable(body):
            raise InvalidStep("a step body must be an async function taking a StepContext")
        return t.StepRequest(
            resource_id=_identifier("resource_id", resource_id),
            step_id=_identifier("step_id", step_id),
            intent=intent,
            correlation_id=validation.correlation_id(correlation_id, error=InvalidStep),
            retry_safe=bool(policy.retry_safe),
            new_step=bool(new_step),
            owner=self.owner,
            lease_seconds=self.config.steps.lease_seconds,
        )


def _read_step(key: dict[str, str]) -> Callable[[Tx], StepRecord | None]:
    def unit(tx: Tx) -> StepRecord | None:
        row = tx.fetch_one("step_by_key", key)
        return None if row is None else StepRecord.from_row(row)

    return unit


def _replay(record: StepRecord) -> StepResult:
    if record.status is StepStatus.SUCCEEDED:
        return StepResult(record.result, replayed=True, record=record)
    raise _stored_error(record, replayed=True)


def _stored_error(record: StepRecord, *, replayed: bool) -> StepFailed | StepTimedOut:
    again = " (stored outcome replayed)" if replayed else ""
    where = f"step {record.step_id!r} of {record.resource_id!r}"
    if record.status is StepStatus.TIMED_OUT:
        return StepTimedOut(
            f"{where} timed out: {record.error_message}{again}", timeout=None, replayed=replayed
        )
    return StepFailed(
        f"{where} failed: {record.error_type}: {record.error_message}{again}",
        error_type=record.error_type or "Error",
        error_message=record.error_message or "",
        replayed=replayed,
    )


def _mismatch(record: StepRecord, request: t.StepRequest) -> StepIntentMismatch:
    return StepIntentMismatch(
        f"step {record.step_id!r} of {record.resource_id!r} was first run with intent"
        f" {record.intent_hash[:12]} (tool {record.tool!r}); this call's intent is"
        f" {request.intent.hash[:12]} (tool {request.intent.tool!r}). Use a new step id, or"
        " pass new_step=True to replace the step"
    )


def _needs_reconciliation(record: StepRecord) -> StepNeedsReconciliation:
    return StepNeedsReconciliation(
        f"step {record.step_id!r} of {record.resource_id!r} (row {record.id}) started but stored"
        " no outcome and is not retry-safe; check whether its side effect happened, then run"
        f" `relaybox steps resolve {record.id}`",
        step_id=record.step_id,
        resource_id=record.resource_id,
    )


def _check_policy(policy: StepPolicy) -> StepPolicy:
    if policy.timeout is not None and not _positive(policy.timeout):
        raise InvalidStep(
            f"a step timeout must be a positive number of seconds, not {policy.timeout!r}"
        )
    if policy.wait_timeout is not None and not _positive(policy.wait_timeout):
        raise InvalidStep(
            f"wait_timeout must be a positive number of seconds, not {policy.wait_timeout!r}"
        )
    if policy.if_running not in ("wait", "fail"):
        raise InvalidStep(f"if_running must be 'wait' or 'fail', not {policy.if_running!r}")
    for name in ("retryable", "not_outcomes"):
        kinds = getattr(policy, name)
        if not isinstance(kinds, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in kinds
        ):
            raise InvalidStep(f"{name} must be a tuple of exception classes")
    return policy


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _identifier(name: str, value: object) -> str:
    return validation.identifier(name, value, error=InvalidStep, max_chars=MAX_ID_CHARS)


def _qualname(error: BaseException) -> str:
    kind = type(error)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def _message(error: BaseException) -> str:
    text = str(error).strip()
    return text or type(error).__name__


def _log_failure(step_pk: int) -> Callable[[Future[bool]], None]:
    def done(future: Future[bool]) -> None:
        error = future.exception()
        if error is not None:
            log.warning("step row %s: could not note the interruption: %s", step_pk, error)

    return done
