"""One HTTP request with relaybox's reading of network failures, for the httpx-based adapters.

"Did the request leave?" decides everything: a failure before the first byte was written is
transient (resending cannot duplicate), a failure after it is ambiguous (the platform may have
acted). httpcore's trace hook tells which, as in the webhook transport.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from relaybox.transports.base import AmbiguousSend, PermanentError, ReceiverDown

# The request certainly did not leave this process.
NOT_SENT_ERRORS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# The request may have reached the far side, but no usable answer came back.
AMBIGUOUS_ERRORS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
# The request could never be made as configured.
CONFIG_ERRORS: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
    httpx.LocalProtocolError,
)


class SendTrace:
    """httpcore ``trace`` hook: tells whether the request started to leave."""

    __slots__ = ("events", "sending")

    def __init__(self) -> None:
        self.events = 0
        self.sending = False

    async def __call__(self, event_name: str, info: dict[str, Any]) -> None:
        self.events += 1
        if "send_request" in event_name:
            self.sending = True

    @property
    def certainly_not_sent(self) -> bool:
        # Only trust the trace if it ran at all (a custom client transport may not trace).
        return self.events > 0 and not self.sending


def _describe(error: BaseException) -> str:
    detail = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    platform: str,
    timeout_seconds: float,
    **kwargs: Any,
) -> httpx.Response:
    """Make one request; network failures become Transient / Ambiguous / Permanent errors."""
    trace = SendTrace()
    try:
        async with asyncio.timeout(timeout_seconds):
            return await client.request(method, url, extensions={"trace": trace}, **kwargs)
    except NOT_SENT_ERRORS as error:
        raise ReceiverDown(f"{platform}: could not connect: {_describe(error)}") from error
    except AMBIGUOUS_ERRORS as error:
        raise AmbiguousSend(f"{platform}: no answer after sending: {_describe(error)}") from error
    except TimeoutError as error:
        if trace.certainly_not_sent:
            raise ReceiverDown(
                f"{platform}: could not connect within {timeout_seconds:g}s"
            ) from error
        raise AmbiguousSend(f"{platform}: no answer within {timeout_seconds:g}s") from error
    except CONFIG_ERRORS as error:
        raise PermanentError(f"{platform}: cannot send: {_describe(error)}") from error
    except httpx.TransportError as error:
        if trace.certainly_not_sent:
            raise ReceiverDown(f"{platform}: could not send: {_describe(error)}") from error
        raise AmbiguousSend(f"{platform}: no answer: {_describe(error)}") from error


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` if it is anything else (never raises)."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
