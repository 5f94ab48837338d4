"""What a failure record holds, and how a caller's report becomes one (never raising).

A caller describes a failure with :class:`FailureReport` (the error itself, where it happened,
the payload); :func:`to_row` turns it into the flat row stored in ``job_failures`` (or logged
when the store cannot take it), with the error's type, message and traceback extracted and
every field cut to a size the table can afford.
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any

from relaybox.audit.payload import capture, cut_text

log = logging.getLogger("relaybox.audit")

MAX_IDENTIFIER_CHARS = 512
MAX_MESSAGE_BYTES = 8_192
MAX_TRACEBACK_BYTES = 65_536


@dataclass(frozen=True)
class FailureReport:
    """A failure as the caller saw it. Only ``queue`` and ``error`` are required.

    ``error`` is the exception (its type, message and traceback are kept) or a message.
    ``terminal`` says whether this failure ended the job (False: it will be retried).
    ``payload_ref`` points at a large blob kept elsewhere (an object-store URL, a path).
    """

    queue: str
    error: BaseException | str
    job_id: str | int | None = None
    stage: str | None = None
    channel: str | None = None
    thread_id: str | None = None
    resource_id: str | None = None
    correlation_id: str | None = None
    attempt: int | None = None
    payload: Any = None
    payload_ref: str | None = None
    error_type: str | None = None  # default: the exception's class name
    message: str | None = None  # default: str(error)
    traceback: str | None = None  # default: the exception's traceback, if it was raised
    terminal: bool = True
    worker_id: str | None = None
    at: float = field(default_factory=time.time)


def to_row(report: FailureReport, max_payload_bytes: int) -> dict[str, Any]:
    """The ``job_failures`` row for ``report``; every value is plain and bounded."""
    error = report.error
    payload = capture(report.payload, max_payload_bytes)
    return {
        "queue": _ident(report.queue) or "unknown",
        "job_id": _ident(report.job_id),
        "stage": _ident(report.stage),
        "channel": _ident(report.channel),
        "thread_id": _ident(report.thread_id),
        "resource_id": _ident(report.resource_id),
        "correlation_id": _ident(report.correlation_id),
        "error_type": _ident(report.error_type) or error_type_of(error),
        "message": cut_text(report.message or message_of(error), MAX_MESSAGE_BYTES),
        "traceback": _traceback(report),
        "attempt": report.attempt if isinstance(report.attempt, int) else None,
        "terminal": bool(report.terminal),
        "worker_id": _ident(report.worker_id),
        "payload": payload.text,
        "payload_kind": payload.kind,
        "payload_size": payload.size,
        "payload_sha256": payload.sha256,
        "payload_truncated": payload.truncated,
        "payload_ref": _ident(report.payload_ref),
        "created_at": float(report.at),
    }


def error_type_of(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        return type(error).__name__
    return "Error"


def message_of(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        try:
            text = str(error)
        except Exception as broken:  # noqa: BLE001 - a raising __str__ must not lose the record
            log.debug("str() of a %s failed: %s", type(error).__name__, broken)
            text = ""
        return text or type(error).__name__
    return str(error) or "(no message)"


def _traceback(report: FailureReport) -> str | None:
    text = report.traceback
    error = report.error
    if text is None and isinstance(error, BaseException) and error.__traceback__ is not None:
        text = "".join(tb.format_exception(type(error), error, error.__traceback__))
    return None if text is None else cut_text(str(text), MAX_TRACEBACK_BYTES)


def _ident(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    if len(text) > MAX_IDENTIFIER_CHARS:
        text = text[:MAX_IDENTIFIER_CHARS]
    return cut_text(text, MAX_IDENTIFIER_CHARS * 4) or None
