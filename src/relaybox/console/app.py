"""The console's ASGI application: pages, the JSON API, the event stream, static files.

Built by :func:`create_app` around an open :class:`~relaybox.store.Store`; ``relaybox serve``
runs it with uvicorn. Errors a request can cause map to one status each, with a one-line
message (JSON for the API, a small page for people), never a traceback:

=========================  =====
BadFilter, bad parameters  400
not logged in              401 (pages: redirect to /login)
not an admin, cross-site   403
NotFound                   404
InvalidState, stale count  409
=========================  =====
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaybox.config import Config
from relaybox.console import auth
from relaybox.console.auth import AuthSettings, Identity, Role
from relaybox.console.filters import BadFilter
from relaybox.console.live import ChangeFeed
from relaybox.console.queries import ChartCache
from relaybox.errors import InvalidState, NotFound, RelayboxError, StoreUnavailable
from relaybox.store import Store

if TYPE_CHECKING:
    from relaybox.inbound.webhooks import InboundApp

log = logging.getLogger("relaybox.console")

# Every page may only load scripts and styles from this server: even a stored string that
# escaped escaping could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none';"
    " form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class NotAuthenticated(RelayboxError):
    """No or wrong credentials (401; pages redirect to the login form)."""


class Forbidden(RelayboxError):
    """Authenticated, but not allowed (a viewer acting, a cross-site request): 403."""


class Conflict(RelayboxError):
    """The request no longer matches the store (a bulk preview's count changed): 409."""


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (a plain ASGI middleware, so streamed
    responses such as the event stream pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class ConsoleState:
    store: Store
    config: Config
    auth: AuthSettings
    feed: ChangeFeed
    templates: Environment
    charts: ChartCache = field(default_factory=ChartCache)


def create_app(
    store: Store,
    config: Config,
    settings: AuthSettings | None = None,
    *,
    poll_seconds: float = 1.0,
    inbound: InboundApp | None = None,
) -> FastAPI:
    """The console for ``store``. ``settings`` defaults to credentials from env/config.

    ``inbound`` (the platforms' webhook app, :func:`relaybox.inbound.webhooks.inbound_app`)
    is mounted at ``/inbound``: ``POST /inbound/<channel>``. It sits outside the console's
    login and CSRF checks on purpose (those live in the console's own routes): a platform
    proves itself by its request signature, which the inbound app verifies. Its running
    handlers are drained when the console shuts down (a mounted app gets no lifespan).
    """
    from relaybox.console.routes import api, pages

    auth_settings = settings or AuthSettings.from_config(config.console)
    feed = ChangeFeed(store, channels=sorted(config.channels), poll_seconds=poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="relaybox-console-feed")
        try:
            yield
        finally:
            await feed.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if inbound is not None:
                await inbound.drain()

    app = FastAPI(
        title="relaybox console API",
        version="1",
        description="Read the outbox, failures and traces of a relaybox store; retry, cancel"
        " and resolve deliveries. See docs/console.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.console = ConsoleState(store, config, auth_settings, feed, _templates())
    app.mount("/static", StaticFiles(directory=str(_package_dir() / "static")), name="static")
    if inbound is not None:
        app.mount("/inbound", inbound, name="inbound")
    app.include_router(api.router)
    app.include_router(pages.router)
    _install_error_handlers(app)

    app.add_middleware(SecurityHeaders)
    return app


def state_of(request: Request) -> ConsoleState:
    found = request.app.state.console
    assert isinstance(found, ConsoleState)
    return found


def _package_dir() -> Path:
    return Path(str(resources.files("relaybox.console")))


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_package_dir() / "templates")),
        autoescape=select_autoescape(["html"], default=True),
    )
    from relaybox.console import render

    env.filters.update(render.FILTERS)
    return env


# -- who is asking -----------------------------------------------------------------------


def identify(request: Request) -> Identity | None:
    """The request's identity, or None when credentials are required and missing/wrong."""
    settings = state_of(request).auth
    header = request.headers.get("authorization")
    if header:
        return settings.by_authorization(header)
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if cookie:
        found = settings.by_session(cookie)
        if found is not None:
            return found
    if settings.open:
        return Identity("local", Role.ADMIN, "open")
    return None


def require_identity(request: Request) -> Identity:
    found = identify(request)
    if found is None:
        raise NotAuthenticated("log in first (or send Authorization: Bearer <token>)")
    return found


def require_admin(request: Request) -> Identity:
    found = require_identity(request)
    if not found.admin:
        raise Forbidden(f"{found.user} is a viewer; only an admin may do this")
    return found


def check_post(request: Request, identity: Identity, form_token: str | None) -> None:
    """Refuse a POST a foreign page could have made (see ``auth`` module docstring)."""
    if not auth.same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise Forbidden("cross-site request refused (Origin is not this console)")
    if identity.via in ("token", "basic"):
        return
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    given = form_token or request.headers.get("x-csrf-token")
    if auth.csrf_matches(cookie, given):
        return
    is_json = request.headers.get("content-type", "").split(";")[0].strip() == "application/json"
    if is_json and request.url.path.startswith("/api/") and given is None:
        return
    raise Forbidden("cross-site request refused: missing or wrong CSRF token (reload the page)")


# -- errors ------------------------------------------------------------------------------

STATUS_OF: list[tuple[type[BaseException], int]] = [
    (NotAuthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (InvalidState, 409),
    (Conflict, 409),
    (StoreUnavailable, 503),
    (BadFilter, 400),
    (RelayboxError, 400),
]


def status_of(error: BaseException) -> int:
    for kind, code in STATUS_OF:
        if isinstance(error, kind):
            return code
    return 500


def _install_error_handlers(app: FastAPI) -> None:
    async def relaybox_error(request: Request, error: Exception) -> Response:
        code = status_of(error)
        return error_response(request, code, str(error))

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return error_response(request, 400, _validation_message(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return error_response(request, error.status_code, str(error.detail))

    app.add_exception_handler(RelayboxError, relaybox_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(x) for x in item.get("loc", ()) if x not in ("query", "path", "body"))
        problems.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


def error_response(request: Request, code: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse({"error": message}, status_code=code, headers=headers)
    if code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    state = state_of(request)
    html = state.templates.get_template("error.html").render(
        code=code, message=message, identity=identify_quietly(request), csrf=""
    )
    return HTMLResponse(html, status_code=code)


def identify_quietly(request: Request) -> Identity | None:
    try:
        return identify(request)
    except RelayboxError:
        return None
