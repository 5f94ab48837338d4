"""Jinja filters and the page renderer (CSRF cookie included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from relaybox.console import auth


def ts(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60)}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60)}m"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h"


def short(value: object, limit: int = 80) -> str:
    if value is None:
        return ""
    flat = " ".join(str(value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


FILTERS = {"ts": ts, "age": age, "short": short}


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the identity and this browser's CSRF token."""
    from relaybox.console.app import identify_quietly, state_of

    state = state_of(request)
    token = request.cookies.get(auth.CSRF_COOKIE) or auth.new_csrf_token()
    html = state.templates.get_template(template).render(
        request=request,
        identity=identify_quietly(request),
        csrf=token,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.cookies.get(auth.CSRF_COOKIE) != token:
        response.set_cookie(auth.CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response
