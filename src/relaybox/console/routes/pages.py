"""The console's HTML pages. Each is a shareable URL: its filters live in the query string.

Pages render on the server (Jinja, autoescaped); a page's ``#live`` region re-fetches itself
when the event stream says the store changed (htmx, see ``static/console.js``). Actions are
plain HTML forms (POST, CSRF token) that redirect back (POST/redirect/GET).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from relaybox.audit.query import GROUP_KEYS, get_failure, group_failures, list_failures
from relaybox.console import actions, auth, bulk, filters
from relaybox.console.app import (
    Forbidden,
    check_post,
    require_admin,
    require_identity,
    state_of,
)
from relaybox.console.charts import line_chart
from relaybox.console.queries import WINDOWS, charts, deliveries_page, overview
from relaybox.console.render import page
from relaybox.console.routes.api import failure_filter, redact, run_bulk_checked, task_state
from relaybox.inbound.query import find_gaps
from relaybox.models import Status
from relaybox.outbox import inspect
from relaybox.steps.inspect import list_steps
from relaybox.tasks.inspect import list_tasks
from relaybox.tasks.models import TaskState
from relaybox.trace import trace

router = APIRouter(include_in_schema=False)


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form body (the console's forms are small and never upload files)."""
    body = await request.body()
    if len(body) > 65_536:
        raise filters.BadFilter("form too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise filters.BadFilter("form is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def query_of(request: Request) -> dict[str, str]:
    return dict(request.query_params)


# -- overview ---------------------------------------------------------------------------


@router.get("/")
async def overview_page(request: Request) -> Response:
    require_identity(request)
    window = request.query_params.get("window", "1h")
    if window not in WINDOWS:
        raise filters.BadFilter(f"window must be one of: {', '.join(WINDOWS)}")
    state = state_of(request)
    summary = await state.store.read(overview(dead_after=state.config.worker.dead_after_seconds))
    chart_data = await state.store.read(charts(window, cache=state.charts))
    by_name = {s.name: s for s in chart_data.series}
    svgs = [
        line_chart([by_name["parts surfaced"]], "parts surfaced", window),
        line_chart([by_name["failures"]], "failures", window),
        line_chart(
            [by_name[f"enqueue to surfaced p{q}"] for q in (50, 95, 99)],
            "enqueue to surfaced",
            window,
            legend=["p50", "p95", "p99"],
        ),
        line_chart([by_name["queue depth"]], "queue depth", window),
    ]
    return page(
        request,
        "overview.html",
        overview=summary,
        charts=svgs,
        window=window,
        windows=list(WINDOWS),
    )


# -- deliveries -------------------------------------------------------------------------


@router.get("/deliveries")
async def deliveries_list(request: Request) -> Response:
    require_identity(request)
    query = query_of(request)
    where = filters.DeliveryFilter.parse(query)
    before = filters.integer(query.get("before_id"), "before_id", minimum=1, maximum=2**63 - 1)
    limit = filters.integer(query.get("limit"), "limit", minimum=1, maximum=filters.MAX_PAGE)
    found = await state_of(request).store.read(
        deliveries_page(where, before_id=before, limit=limit or 50)
    )
    next_url = None
    if found.next_before_id is not None:
        next_url = "/deliveries?" + urlencode({**query, "before_id": found.next_before_id})
    return page(
        request,
        "deliveries.html",
        deliveries=found.deliveries,
        query=query,
        next_url=next_url,
        statuses=[s.value for s in Status],
        where=where,
    )


@router.post("/deliveries/bulk/preview")
async def bulk_preview_page(request: Request) -> Response:
    who = require_admin(request)
    form = await form_of(request)
    check_post(request, who, form.get("csrf"))
    action = bulk.parse_action(form.get("action"))
    where = filters.DeliveryFilter.parse(form)
    state = state_of(request)
    count = await asyncio.to_thread(bulk.preview, state.store, action, where)
    return page(
        request,
        "bulk_confirm.html",
        action=str(action),
        where=where,
        count=count,
        fields=where.query_string(),
        back="/deliveries?" + urlencode(where.query_string()),
    )


@router.post("/deliveries/bulk")
async def bulk_run_page(request: Request) -> Response:
    who = require_admin(request)
    form = await form_of(request)
    check_post(request, who, form.get("csrf"))
    action = bulk.parse_action(form.get("action"))
    where = filters.DeliveryFilter.parse(form)
    expected = filters.integer(form.get("expected"), "expected", minimum=0, maximum=2**63 - 1)
    if expected is None:
        raise filters.BadFilter("expected (the preview's count) is missing: preview first")
    result = await run_bulk_checked(state_of(request), action, where, who, expected)
    return page(
        request,
        "bulk_done.html",
        result=result,
        back="/deliveries?" + urlencode(where.query_string()),
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_page(request: Request, delivery_id: str) -> Response:
    require_identity(request)
    ident = filters.record_id(delivery_id, "delivery")
    store = state_of(request).store
    found = await store.read(inspect.get_delivery(ident))
    attempts = await store.read(inspect.attempts_of(ident))
    events = await store.read(inspect.events_of(ident))
    return page(request, "delivery.html", d=found, attempts=attempts, events=events)


@router.post("/deliveries/{delivery_id}/{action}")
async def delivery_action(request: Request, delivery_id: str, action: str) -> Response:
    who = require_admin(request)
    ident = filters.record_id(delivery_id, "delivery")
    form = await form_of(request)
    check_post(request, who, form.get("csrf"))
    state = state_of(request)
    if action == "cancel":
        await actions.cancel(state, ident, who.who, form.get("reason", "")[:500])
    elif action == "retry":
        await actions.retry(state, ident, who.who)
    elif action == "resolve":
        arrived = form.get("arrived")
        if arrived not in ("yes", "no"):
            raise filters.BadFilter("arrived must be yes or no")
        await actions.resolve(state, ident, who.who, arrived == "yes")
    else:
        raise filters.BadFilter(f"unknown action {action[:40]!r}; one of: cancel, retry, resolve")
    return RedirectResponse(f"/deliveries/{ident}", status_code=303)


# -- failures, trace, gaps, steps -----------------------------------------------------------


@router.get("/failures")
async def failures_page(request: Request) -> Response:
    who = require_identity(request)
    q = query_of(request)
    where = failure_filter(
        since=q.get("since", "1h") or None,
        queue=q.get("queue"),
        job=q.get("job"),
        stage=q.get("stage"),
        channel=q.get("channel"),
        thread=q.get("thread"),
        resource=q.get("resource"),
        error_type=q.get("error_type"),
        correlation=q.get("correlation"),
        terminal=q.get("terminal") in ("1", "true", "on"),
    )
    by = q.get("by") or None
    if by is not None and by not in GROUP_KEYS:
        raise filters.BadFilter(f"by must be one of: {', '.join(GROUP_KEYS)}")
    store = state_of(request).store
    groups = await store.read(group_failures(where, by, 100)) if by else []
    rows = [] if by else [redact(f, who) for f in await store.read(list_failures(where, 100))]
    key_param = {"error": "error_type"}.get(by or "", by or "")
    return page(
        request,
        "failures.html",
        groups=groups,
        failures=rows,
        by=by,
        group_keys=GROUP_KEYS,
        key_param=key_param,
        query=q,
        since=q.get("since", "1h"),
    )


@router.get("/failures/{failure_id}")
async def failure_page(request: Request, failure_id: str) -> Response:
    who = require_identity(request)
    ident = filters.record_id(failure_id, "failure")
    found = redact(await state_of(request).store.read(get_failure(ident)), who)
    return page(request, "failure.html", f=found)


@router.get("/trace")
async def trace_page(request: Request) -> Response:
    require_identity(request)
    ref = filters.text(request.query_params.get("ref"), "ref")
    result = None
    if ref is not None and ref.strip():
        result = await state_of(request).store.read(trace(ref))
    return page(request, "trace.html", ref=ref or "", result=result)


@router.get("/gaps")
async def gaps_page(request: Request) -> Response:
    require_identity(request)
    q = query_of(request)
    older_than = q.get("older_than") or "5m"
    age = filters.duration(older_than, "older_than")
    since = filters.moment(q.get("since"), "since", time.time())
    found = await state_of(request).store.read(find_gaps(age, since=since, limit=200))
    return page(request, "gaps.html", gaps=found, older_than=older_than, since=q.get("since", ""))


@router.get("/tasks")
async def tasks_page(request: Request) -> Response:
    require_identity(request)
    q = query_of(request)
    late = q.get("late") in ("1", "true", "on")
    state = task_state(q.get("state"))
    found = await state_of(request).store.read(
        list_tasks(now=time.time(), state=state, late=late, limit=200)
    )
    return page(
        request,
        "tasks.html",
        tasks=found,
        late=late,
        state=q.get("state", ""),
        states=[s.value for s in TaskState],
        now=time.time(),
    )


@router.get("/steps")
async def steps_page(request: Request) -> Response:
    require_identity(request)
    found = await state_of(request).store.read(list_steps(needs_reconciliation=True, limit=200))
    return page(request, "steps.html", steps=found)


# -- login -------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path on this server (never //evil.example or https://...)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
async def login_form(request: Request) -> Response:
    return page(
        request, "login.html", next=_safe_next(request.query_params.get("next")), error=None
    )


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    settings = state_of(request).auth
    if not auth.same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise Forbidden("cross-site request refused (Origin is not this console)")
    if not auth.csrf_matches(request.cookies.get(auth.CSRF_COOKIE), form.get("csrf")):
        raise Forbidden("cross-site request refused: missing or wrong CSRF token (reload the page)")
    target = _safe_next(form.get("next"))
    found = settings.by_password(form.get("user", ""), form.get("password", ""))
    if found is None:
        return page(
            request, "login.html", status_code=401, next=target, error="wrong user or password"
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        settings.session_cookie(found),
        httponly=True,
        samesite="strict",
        max_age=int(auth.SESSION_SECONDS),
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await form_of(request)
    if not auth.csrf_matches(request.cookies.get(auth.CSRF_COOKIE), form.get("csrf")):
        raise Forbidden("cross-site request refused: missing or wrong CSRF token (reload the page)")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


# -- live updates --------------------------------------------------------------------------


@router.get("/events")
async def events(request: Request) -> Response:
    """Server-sent events: ``change`` whenever the store changed (at most twice a second)."""
    require_identity(request)
    feed = state_of(request).feed

    async def stream() -> AsyncIterator[str]:
        feed.listen()
        try:
            seen = feed.version
            yield "retry: 2000\n\n"
            while not feed.closed:
                now = await feed.wait(seen, timeout=15.0)
                if await request.is_disconnected():
                    return
                if now != seen:
                    seen = now
                    yield f"event: change\ndata: {now}\n\n"
                else:
                    yield ": still here\n\n"
        finally:
            feed.unlisten()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
