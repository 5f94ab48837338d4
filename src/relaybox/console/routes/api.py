"""The JSON API under ``/api/v1``: the console's data and actions for scripts.

Every answer has a schema in ``/openapi.json`` (responses are typed by relaybox's own
records). Errors are ``{"error": "<one line>"}`` with the status listed in ``console/app.py``.
POSTs take a JSON body; see ``console/auth.py`` for authentication and cross-site rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from relaybox.audit.query import (
    GROUP_KEYS,
    FailureFilter,
    FailureGroup,
    JobFailure,
    get_failure,
    group_failures,
    list_failures,
)
from relaybox.console import actions, bulk, filters
from relaybox.console.app import (
    Conflict,
    ConsoleState,
    check_post,
    require_admin,
    require_identity,
    state_of,
)
from relaybox.console.auth import Identity
from relaybox.console.queries import (
    Charts,
    DeliveryPage,
    Overview,
    charts,
    deliveries_page,
    overview,
)
from relaybox.inbound.models import InboundMessage
from relaybox.inbound.query import find_gaps
from relaybox.models import Attempt, Delivery
from relaybox.outbox import inspect
from relaybox.outbox.events import DeliveryEvent
from relaybox.steps.inspect import list_steps
from relaybox.steps.records import StepRecord
from relaybox.tasks.inspect import list_tasks
from relaybox.tasks.models import Task, TaskState
from relaybox.trace import Trace, trace

MAX_ID = 2**63 - 1


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong, in one line.")


_READ: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 503)
}
_WRITE: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 503)
}

router = APIRouter(prefix="/api/v1", tags=["api"])

Viewer = Annotated[Identity, Depends(require_identity)]
Admin = Annotated[Identity, Depends(require_admin)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID, description="Delivery id.")]
Text = Annotated[str | None, Query(max_length=filters.MAX_TEXT)]
Moment = Annotated[
    str | None,
    Query(max_length=64, description="A duration ago (2h, 7d) or an ISO 8601 time (UTC)."),
]


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: Delivery
    attempts: list[Attempt]
    events: list[DeliveryEvent]  # who did what to it: operators, give-ups, parks, expiry


@dataclass(frozen=True)
class BulkPreview:
    action: str
    filter: str
    count: int


class CancelBody(BaseModel):
    reason: str = Field("", max_length=500, description="Kept as the delivery's last error.")


class RetryBody(BaseModel):
    pass


class ResolveBody(BaseModel):
    arrived: bool = Field(description="Whether the ambiguous part reached the user.")


class BulkBody(BaseModel):
    action: Literal["retry", "cancel"]
    status: str | None = Field(None, max_length=32)
    channel: str | None = Field(None, max_length=filters.MAX_TEXT)
    thread: str | None = Field(None, max_length=filters.MAX_TEXT)
    correlation: str | None = Field(None, max_length=filters.MAX_TEXT)
    since: str | None = Field(None, max_length=64)
    until: str | None = Field(None, max_length=64)
    dry_run: bool = Field(False, description="Only count what would be changed.")
    expected_count: int | None = Field(
        None,
        ge=0,
        le=MAX_ID,
        description="The preview's count: refused with 409 if the filter now matches another"
        " number (preview again).",
    )


def _delivery_filter(**fields: str | None) -> filters.DeliveryFilter:
    return filters.DeliveryFilter.parse({k: v for k, v in fields.items() if v is not None})


@router.get("/overview", responses=_READ)
async def get_overview(request: Request, _who: Viewer) -> Overview:
    """Per channel: queued, sending, parked (unknown), delivered and failed in the last hour."""
    state = state_of(request)
    return await state.store.read(overview(dead_after=state.config.worker.dead_after_seconds))


@router.get("/charts", responses=_READ)
async def get_charts(
    request: Request, _who: Viewer, window: Literal["1h", "6h", "24h"] = "1h"
) -> Charts:
    """Throughput, failures, enqueue-to-surfaced percentiles and queue depth, 60 points."""
    state = state_of(request)
    return await state.store.read(charts(window, cache=state.charts))


@router.get("/deliveries", responses=_READ)
async def get_deliveries(
    request: Request,
    _who: Viewer,
    status: Text = None,
    channel: Text = None,
    thread: Text = None,
    correlation: Text = None,
    since: Moment = None,
    until: Moment = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=filters.MAX_PAGE)] = 50,
) -> DeliveryPage:
    """Deliveries matching the filters, newest first; page with ``before_id``."""
    where = _delivery_filter(
        status=status,
        channel=channel,
        thread=thread,
        correlation=correlation,
        since=since,
        until=until,
    )
    unit = deliveries_page(where, before_id=before_id, limit=limit)
    return await state_of(request).store.read(unit)


@router.get("/deliveries/bulk/preview", responses=_READ)
async def preview_bulk(
    request: Request,
    _who: Viewer,
    action: Literal["retry", "cancel"],
    status: Text = None,
    channel: Text = None,
    thread: Text = None,
    correlation: Text = None,
    since: Moment = None,
    until: Moment = None,
) -> BulkPreview:
    """How many deliveries a bulk retry or cancel with these filters would change now."""
    where = _delivery_filter(
        status=status,
        channel=channel,
        thread=thread,
        correlation=correlation,
        since=since,
        until=until,
    )
    kind = bulk.parse_action(action)
    state = state_of(request)
    count = await asyncio.to_thread(bulk.preview, state.store, kind, where)
    return BulkPreview(str(kind), where.describe(), count)


@router.post("/deliveries/bulk", responses=_WRITE)
async def post_bulk(request: Request, who: Admin, body: BulkBody) -> bulk.BulkResult:
    """Retry or cancel every delivery matching the filters (``dry_run`` only counts)."""
    check_post(request, who, None)
    where = _delivery_filter(
        status=body.status,
        channel=body.channel,
        thread=body.thread,
        correlation=body.correlation,
        since=body.since,
        until=body.until,
    )
    action = bulk.parse_action(body.action)
    return await run_bulk_checked(
        state_of(request), action, where, who, body.expected_count, dry_run=body.dry_run
    )


async def run_bulk_checked(
    state: ConsoleState,
    action: bulk.BulkAction,
    where: filters.DeliveryFilter,
    who: Identity,
    expected: int | None,
    *,
    dry_run: bool = False,
) -> bulk.BulkResult:
    """Run a bulk action after checking the preview's count still holds."""
    if expected is not None:
        now = await asyncio.to_thread(bulk.preview, state.store, action, where)
        if now != expected:
            raise Conflict(
                f"the filter now matches {now} deliveries, not {expected}; preview again"
            )
    result = await asyncio.to_thread(
        bulk.run_bulk, state.store, action, where, who=who.who, dry_run=dry_run
    )
    state.feed.wake()
    return result


@router.get("/deliveries/{delivery_id}", responses=_READ)
async def get_delivery(request: Request, _who: Viewer, delivery_id: DeliveryId) -> DeliveryDetail:
    """One delivery with its parts (GUIDs, outcomes), cursor, every attempt and event."""
    store = state_of(request).store
    found = await store.read(inspect.get_delivery(delivery_id))
    attempts = await store.read(inspect.attempts_of(delivery_id))
    events = await store.read(inspect.events_of(delivery_id))
    return DeliveryDetail(found, attempts, events)


@router.post("/deliveries/{delivery_id}/cancel", responses=_WRITE)
async def post_cancel(
    request: Request, who: Admin, delivery_id: DeliveryId, body: CancelBody
) -> Delivery:
    """Cancel a queued or sending delivery."""
    check_post(request, who, None)
    return await actions.cancel(state_of(request), delivery_id, who.who, body.reason)


@router.post("/deliveries/{delivery_id}/retry", responses=_WRITE)
async def post_retry(
    request: Request, who: Admin, delivery_id: DeliveryId, body: RetryBody
) -> Delivery:
    """Send a failed, expired or parked delivery again from its cursor."""
    check_post(request, who, None)
    return await actions.retry(state_of(request), delivery_id, who.who)


@router.post("/deliveries/{delivery_id}/resolve", responses=_WRITE)
async def post_resolve(
    request: Request, who: Admin, delivery_id: DeliveryId, body: ResolveBody
) -> Delivery:
    """Settle a parked (unknown) delivery: did its ambiguous part arrive? Then continue."""
    check_post(request, who, None)
    return await actions.resolve(state_of(request), delivery_id, who.who, body.arrived)


def failure_filter(
    since: Moment = None,
    queue: Text = None,
    job: Text = None,
    stage: Text = None,
    channel: Text = None,
    thread: Text = None,
    resource: Text = None,
    error_type: Text = None,
    correlation: Text = None,
    terminal: bool = False,
) -> FailureFilter:
    """The failure filters of ``relaybox failures``, from the query string."""
    return FailureFilter(
        since=filters.moment(since, "since", time.time()),
        queue=filters.text(queue, "queue"),
        job_id=filters.text(job, "job"),
        stage=filters.text(stage, "stage"),
        channel=filters.text(channel, "channel"),
        thread_id=filters.text(thread, "thread"),
        resource_id=filters.text(resource, "resource"),
        error_type=filters.text(error_type, "error_type"),
        correlation_id=filters.text(correlation, "correlation"),
        terminal=True if terminal else None,
    )


def redact(failure: JobFailure, who: Identity) -> JobFailure:
    """Viewers see that a payload or traceback exists, not what it holds."""
    if who.admin:
        return failure
    return dataclasses.replace(failure, payload=None, traceback=None)


FailureFilterDep = Annotated[FailureFilter, Depends(failure_filter)]


@router.get("/failures", responses=_READ)
async def get_failures(
    request: Request,
    who: Viewer,
    where: FailureFilterDep,
    limit: Annotated[int, Query(ge=1, le=filters.MAX_PAGE)] = 50,
) -> list[JobFailure]:
    """Failures newest first (payload and traceback for admins only)."""
    found = await state_of(request).store.read(list_failures(where, limit))
    return [redact(f, who) for f in found]


@router.get("/failures/groups", responses=_READ)
async def get_failure_groups(
    request: Request,
    _who: Viewer,
    where: FailureFilterDep,
    by: Literal["queue", "stage", "channel", "thread", "resource", "error"] = "thread",
    limit: Annotated[int, Query(ge=1, le=filters.MAX_PAGE)] = 50,
) -> list[FailureGroup]:
    """Failures counted per chat, queue, stage, channel, user or error type."""
    assert by in GROUP_KEYS
    return await state_of(request).store.read(group_failures(where, by, limit))


@router.get("/failures/{failure_id}", responses=_READ)
async def get_one_failure(
    request: Request,
    who: Viewer,
    failure_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> JobFailure:
    """One failure record (payload and traceback for admins only)."""
    return redact(await state_of(request).store.read(get_failure(failure_id)), who)


@router.get("/trace", responses=_READ)
async def get_trace(
    request: Request,
    _who: Viewer,
    ref: Annotated[
        str,
        Query(
            min_length=1,
            max_length=filters.MAX_TEXT,
            description="inbound:<id>, delivery:<id>, a correlation id or a bare id.",
        ),
    ],
) -> Trace:
    """Everything that happened for one inbound message, delivery or correlation id."""
    checked = filters.text(ref, "ref")
    if checked is None or not checked.strip():
        raise filters.BadFilter(
            "ref is empty; give inbound:<id>, delivery:<id> or a correlation id"
        )
    return await state_of(request).store.read(trace(checked))


@router.get("/gaps", responses=_READ)
async def get_gaps(
    request: Request,
    _who: Viewer,
    older_than: Annotated[str, Query(max_length=32)] = "5m",
    since: Moment = None,
    limit: Annotated[int, Query(ge=1, le=filters.MAX_PAGE)] = 100,
) -> list[InboundMessage]:
    """Inbound messages that got no delivered reply (silent loss), oldest first."""
    age = filters.duration(older_than, "older_than")
    start = filters.moment(since, "since", time.time())
    return await state_of(request).store.read(find_gaps(age, since=start, limit=limit))


@router.get("/tasks", responses=_READ)
async def get_tasks(
    request: Request,
    _who: Viewer,
    state: Text = None,
    late: bool = False,
    thread: Text = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=filters.MAX_PAGE)] = 100,
) -> list[Task]:
    """Agent tasks newest first; ``late``: open tasks past a deadline (docs/tasks.md)."""
    unit = list_tasks(
        now=time.time(),
        state=task_state(state),
        late=late,
        thread_id=filters.text(thread, "thread"),
        before_id=before_id,
        limit=limit,
    )
    return await state_of(request).store.read(unit)


def task_state(value: str | None) -> TaskState | None:
    value = filters.text(value, "state")
    if value is None:
        return None
    try:
        return TaskState(value)
    except ValueError:
        raise filters.BadFilter(
            f"unknown task state {value[:40]!r}; one of: {', '.join(s.value for s in TaskState)}"
        ) from None


@router.get("/steps", responses=_READ)
async def get_steps(
    request: Request,
    who: Viewer,
    needs_reconciliation: bool = True,
    limit: Annotated[int, Query(ge=1, le=filters.MAX_PAGE)] = 100,
) -> list[StepRecord]:
    """Agent steps; by default those needing an operator (crashed mid-way, unsafe to rerun)."""
    found = await state_of(request).store.read(
        list_steps(needs_reconciliation=needs_reconciliation, limit=limit)
    )
    if who.admin:
        return found
    return [dataclasses.replace(s, intent_json="", result=None) for s in found]
