"""Webhook transport: POST each part as JSON to a URL you own.

The contract
============

**Request.** Each part is one ``POST <url>`` with a JSON body::

    {"guid": "...", "delivery_id": 42, "thread_id": "...", "recipient": "...",
     "text": "...", "index": 0, "count": 3, "correlation_id": "..."}

and the header ``Idempotency-Key: <guid>`` (plus any configured headers). The GUID is the same
on every resend of a part, so a receiver that remembers the keys it has seen can drop second
copies (:class:`relaybox.dedup.Deduplicator` does that for you).

**Response.** How the answer is read:

- **2xx**: surfaced. A JSON object body may carry ``"message_id": "..."`` (kept) and
  ``"surfaced": false`` (accepted but not shown: the part is retried). Any other body,
  including none or garbage, still means surfaced.
- **409**: duplicate. You already had this GUID, so the part counts as delivered
  (``message_id`` is kept if the JSON body gives one).
- **429**: rate limited. relaybox waits ``Retry-After`` (delta-seconds or an HTTP-date);
  waiting does not burn an attempt.
- **503 with a valid Retry-After**: unavailable for that long; waiting is free.
- **other 5xx**, and 503 without a valid ``Retry-After``: the receiver is down
  (:class:`ReceiverDown`). Retried with backoff until the reply's max age; no attempt burned.
- **other 4xx**, and 3xx (redirects are not followed): permanent. The delivery fails at once.
- **could not connect** (refused, DNS failure, connect or pool timeout): the receiver is
  down, as for 5xx; the request certainly did not leave.
- **no answer after the request may have left** (read/write timeout, connection dropped,
  protocol error, overall deadline): ambiguous. With ``dedup=True`` the part is resent under
  the same GUID; otherwise relaybox asks ``status_url`` (below) and parks the delivery as
  ``unknown`` if that cannot tell.

``Retry-After`` values below zero count as 0, values above one day are capped at one day, and
a missing or unparseable value on a 429 means "no hint". Every send has an overall deadline of
``timeout_seconds`` (connect, upload and reading the answer together), so a receiver that hangs
never hangs the worker.

**dedup.** ``dedup=True`` (the default) promises that the receiver honours ``Idempotency-Key``
(answers 409, or 2xx without showing it again, for a key it has seen). Set ``dedup=False`` if it
does not; relaybox then never blindly resends after an ambiguous send.

**status_url (optional).** After an ambiguous send relaybox may ask ``GET <status_url>?guid=<guid>``
(with the same ``Idempotency-Key`` header). Answer ``200 {"surfaced": true, "message_id": "..."}``
if the user has the part, ``200 {"surfaced": false}`` or ``404`` if you certainly do not have it
(it is then sent again), anything else if you cannot tell. Mind that a 404 from a mistyped
``status_url`` also reads as "not sent".

Error messages name the URL without its query string or credentials, since webhook URLs often
carry a token there.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from relaybox.models import Outcome
from relaybox.transports._http import (
    AMBIGUOUS_ERRORS,
    CONFIG_ERRORS,
    NOT_SENT_ERRORS,
    SendTrace,
)
from relaybox.transports.base import (
    NOT_SENT,
    AmbiguousSend,
    NotSent,
    OutgoingPart,
    PermanentError,
    RateLimited,
    ReceiverDown,
    SendResult,
    Unavailable,
)
from relaybox.transports.registry import TransportKind
from relaybox.validation import is_http_url

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "TRANSPORT",
    "WebhookOptions",
    "WebhookTransport",
    "parse_retry_after",
    "payload",
]

MAX_RETRY_AFTER_SECONDS = 86400.0
_BODY_SNIPPET_CHARS = 200
_USER_AGENT = "relaybox-webhook/1"


def payload(part: OutgoingPart) -> dict[str, Any]:
    """The JSON body sent for ``part``."""
    return {
        "guid": part.guid,
        "delivery_id": part.delivery_id,
        "thread_id": part.thread_id,
        "recipient": part.recipient,
        "text": part.text,
        "index": part.index,
        "count": part.count,
        "correlation_id": part.correlation_id,
    }


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date).

    Returns ``None`` if the value is missing or unparseable; negative values give 0 and values
    above one day are capped at one day.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _shown_url(url: str) -> str:
    """``url`` without credentials, query or fragment, for error messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(invalid url)"


def _one_line(text: str, limit: int = _BODY_SNIPPET_CHARS) -> str:
    return " ".join(text[: limit * 4].split())[:limit]


def _describe(error: BaseException) -> str:
    detail = _one_line(str(error))
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` if it is anything else (never raises)."""
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _message_id(data: dict[str, Any] | None) -> str | None:
    if data is None:
        return None
    value = data.get("message_id")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class WebhookTransport:
    """POST parts to ``url``; see the module docstring for the exact contract.

    ``client`` may be a shared :class:`httpx.AsyncClient` (it is not closed by :meth:`aclose`);
    otherwise one is created on first use. Safe to call concurrently from one event loop.
    """

    def __init__(
        self,
        url: str,
        *,
        dedup: bool = True,
        timeout_seconds: float = 15.0,
        headers: dict[str, str] | None = None,
        status_url: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds!r}")
        self.url = url
        self.status_url = status_url
        self.timeout_seconds = float(timeout_seconds)
        self._dedup = dedup
        self._headers = dict(headers or {})
        self._client = client
        self._owns_client = client is None
        self._timeout = httpx.Timeout(self.timeout_seconds)

    def __repr__(self) -> str:
        return f"WebhookTransport({_shown_url(self.url)!r}, dedup={self._dedup})"

    @property
    def dedups_by_guid(self) -> bool:
        return self._dedup

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                headers={"User-Agent": _USER_AGENT},
            )
        return self._client

    def _request_headers(self, part: OutgoingPart) -> dict[str, str]:
        headers = {
            key: value for key, value in self._headers.items() if key.lower() != "idempotency-key"
        }
        headers["Idempotency-Key"] = part.guid
        return headers

    async def send(self, part: OutgoingPart) -> SendResult:
        url = _shown_url(self.url)
        body = json.dumps(payload(part), ensure_ascii=False, separators=(",", ":")).encode()
        headers = self._request_headers(part)
        headers["Content-Type"] = "application/json"
        trace = SendTrace()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self._get_client().post(
                    self.url,
                    content=body,
                    headers=headers,
                    timeout=self._timeout,
                    extensions={"trace": trace},
                )
        except NOT_SENT_ERRORS as error:
            raise ReceiverDown(f"could not connect to {url}: {_describe(error)}") from error
        except AMBIGUOUS_ERRORS as error:
            raise AmbiguousSend(
                f"no answer from {url} after sending: {_describe(error)}"
            ) from error
        except TimeoutError as error:
            if trace.certainly_not_sent:
                raise ReceiverDown(
                    f"could not connect to {url} within {self.timeout_seconds:g}s"
                ) from error
            raise AmbiguousSend(f"no answer from {url} within {self.timeout_seconds:g}s") from error
        except CONFIG_ERRORS as error:
            raise PermanentError(f"cannot send to {url}: {_describe(error)}") from error
        except httpx.TransportError as error:
            if trace.certainly_not_sent:
                raise ReceiverDown(f"could not send to {url}: {_describe(error)}") from error
            raise AmbiguousSend(f"no answer from {url}: {_describe(error)}") from error
        return self._interpret(response, url)

    def _interpret(self, response: httpx.Response, url: str) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            data = _json_object(response)
            message_id = _message_id(data)
            if data is not None and data.get("surfaced") is False:
                return SendResult(Outcome.NOT_SURFACED, message_id=message_id)
            return SendResult(Outcome.SURFACED, message_id=message_id)
        if status == 409:
            return SendResult(Outcome.DUPLICATE, message_id=_message_id(_json_object(response)))
        message = self._error_message(response, url)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(message, retry_after=retry_after)
        if status == 503:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                raise Unavailable(message, retry_after=retry_after)
            raise ReceiverDown(message)
        if status >= 500:
            raise ReceiverDown(message)
        raise PermanentError(message)

    @staticmethod
    def _error_message(response: httpx.Response, url: str) -> str:
        text = response.content[: _BODY_SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
        snippet = _one_line(text) or "(empty body)"
        return f"HTTP {response.status_code} from {url}: {snippet}"

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        """Ask ``status_url`` whether ``part`` arrived; ``None`` if it cannot tell (or is unset)."""
        if self.status_url is None:
            return None
        try:
            status_url = httpx.URL(self.status_url).copy_merge_params({"guid": part.guid})
            headers = self._request_headers(part)
            headers["Accept"] = "application/json"
            async with asyncio.timeout(self.timeout_seconds):
                response = await self._get_client().get(
                    status_url, headers=headers, timeout=self._timeout
                )
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError, ValueError):
            return None
        if response.status_code == 404:
            return NOT_SENT
        if response.status_code != 200:
            return None
        data = _json_object(response)
        if data is None:
            return None
        surfaced = data.get("surfaced")
        if surfaced is True:
            return SendResult(Outcome.SURFACED, message_id=_message_id(data))
        if surfaced is False:
            return NOT_SENT
        return None

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> WebhookTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _http_url(value: str | None, key: str) -> None:
    if value is not None and not is_http_url(value):
        raise ValueError(f"{key} must be an http:// or https:// URL")


@dataclass(frozen=True)
class WebhookOptions:
    """``[channels.x]`` keys of a ``transport = "webhook"`` channel."""

    url: str
    status_url: str | None = None  # GET ?guid=... answers reconcile questions
    dedup: bool = True  # the receiver honours Idempotency-Key
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _http_url(self.url, "url")
        _http_url(self.status_url, "status_url")


def _build(channel: ChannelConfig) -> WebhookTransport:
    options: WebhookOptions = channel.options
    return WebhookTransport(
        options.url,
        dedup=options.dedup,
        timeout_seconds=channel.send_timeout_seconds,
        headers=options.headers,
        status_url=options.status_url,
    )


TRANSPORT = TransportKind(
    name="webhook",
    build=_build,
    options=WebhookOptions,
    summary="POST each part as JSON to a URL you own (Idempotency-Key: <guid>)",
)
