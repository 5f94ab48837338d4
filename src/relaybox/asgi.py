"""Minimal ASGI plumbing (no web framework needed): read a request, send an answer.

Used by the inbound webhook app (:mod:`relaybox.inbound.webhooks`) and the platform fakes in
:mod:`relaybox.testing.fakes`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1_048_576


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY_BYTES`."""


@dataclass
class Request:
    """One HTTP request as the fakes and the inbound app see it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    def form(self) -> dict[str, str]:
        """``application/x-www-form-urlencoded`` body (last value of a repeated key)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def form_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON; ``None`` if it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None

    def params(self) -> dict[str, Any]:
        """Query string, overlaid by a JSON object, form or multipart body: how SDKs send
        their arguments."""
        params: dict[str, Any] = self.query_params()
        data = self.json()
        content_type = self.headers.get("content-type", "")
        if isinstance(data, dict):
            params.update(data)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            params.update(self.form())
        elif "multipart/form-data" in content_type:
            params.update(_multipart(self.body, content_type))
        return params


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    boundary = content_type.split("boundary=", 1)[-1].strip().strip('"').encode()
    fields: dict[str, Any] = {}
    for chunk in body.split(b"--" + boundary):
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep or b'name="' not in head:
            continue
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = value.removesuffix(b"\r\n").decode("utf-8", "replace")
    return fields


async def read_request(scope: Scope, receive: Receive) -> Request:
    """Read the whole body; raise :class:`BodyTooLarge` past :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    headers = {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in scope.get("headers", [])
    }
    return Request(
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=b"".join(chunks),
    )


async def send_response(
    send: Send,
    status: int,
    body: bytes | str | Any = b"",
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = None,
) -> None:
    """Answer: ``body`` bytes, text, or any other value as JSON."""
    if isinstance(body, str):
        data, kind = body.encode("utf-8"), content_type or "text/plain; charset=utf-8"
    elif isinstance(body, bytes):
        data, kind = body, content_type or "application/octet-stream"
    else:
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        kind = content_type or "application/json"
    raw = [(b"content-type", kind.encode()), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
