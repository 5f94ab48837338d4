"""Filters from query strings and forms, checked strictly: a bad one is a 400 with one line.

Every page keeps its filters in the query string, so a filtered view is a URL to share. The
same parsing serves the API and the CLI's bulk actions, so ``?status=failed&since=2h`` means
the same thing everywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from relaybox import validation
from relaybox.errors import RelayboxError
from relaybox.models import Status

MAX_TEXT = validation.MAX_ID_CHARS  # longer ids are not ids: refused, never queried
MAX_PAGE = 500
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")


class BadFilter(RelayboxError):
    """A filter, page size or id in a request is not valid (HTTP 400)."""


def text(value: str | None, name: str) -> str | None:
    """An id-like filter: None when absent or empty; otherwise the rules every identifier
    follows (``relaybox.validation``: length, UTF-8, no NUL), else a 400."""
    if value is None or value == "":
        return None
    return validation.identifier(name, value, error=BadFilter, max_chars=MAX_TEXT)


def duration(value: str, name: str) -> float:
    """Seconds in ``90s``, ``15m``, ``1h``, ``7d``, ``2w`` or plain seconds."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise BadFilter(
            f"{name}: {value[:40]!r} is not a duration; use a number with s, m, h, d or w"
            " (e.g. 90s, 15m, 1h, 7d)"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > 100 * 365 * 86400:
        raise BadFilter(f"{name}: {value[:40]!r} is more than a century")
    return seconds


def moment(value: str | None, name: str, now: float) -> float | None:
    """A point in time: a duration ago (``2h``) or an ISO 8601 time (UTC unless it says)."""
    value = text(value, name)
    if value is None:
        return None
    if _DURATION.match(value.strip().lower()):
        return now - duration(value, name)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadFilter(
            f"{name}: {value[:40]!r} is neither a duration (2h, 7d) nor an ISO 8601 time"
            " (2026-05-01T12:00:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def integer(value: str | None, name: str, *, minimum: int, maximum: int) -> int | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(r"\d{1,18}", value.strip()):
        raise BadFilter(f"{name} must be a whole number (got {value[:40]!r})")
    number = int(value)
    if not minimum <= number <= maximum:
        raise BadFilter(f"{name} must be between {minimum} and {maximum} (got {number})")
    return number


def record_id(value: str | int, what: str) -> int:
    """A path id (delivery, failure, ...): a positive whole number."""
    number = integer(str(value), f"{what} id", minimum=1, maximum=2**63 - 1)
    if number is None:
        raise BadFilter(f"{what} id is missing")
    return number


def status(value: str | None) -> Status | None:
    value = text(value, "status")
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError:
        raise BadFilter(
            f"unknown status {value[:40]!r}; one of: {', '.join(s.value for s in Status)}"
        ) from None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which deliveries a list or a bulk action is about; ``None`` means any."""

    status: Status | None = None
    channel: str | None = None
    thread_id: str | None = None
    correlation_id: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str], now: float | None = None) -> DeliveryFilter:
        """From ``status``, ``channel``, ``thread``, ``correlation``, ``since``, ``until``."""
        at = time.time() if now is None else now
        found = cls(
            status=status(query.get("status")),
            channel=text(query.get("channel"), "channel"),
            thread_id=text(query.get("thread"), "thread"),
            correlation_id=text(query.get("correlation"), "correlation"),
            since=moment(query.get("since"), "since", at),
            until=moment(query.get("until"), "until", at),
        )
        if found.since is not None and found.until is not None and found.since >= found.until:
            raise BadFilter("since must be before until")
        return found

    def params(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = None if self.status is None else str(self.status)
        return data

    def with_status(self, value: Status | None) -> DeliveryFilter:
        return replace(self, status=value)

    def describe(self) -> str:
        """One line for an operator, e.g. ``status=failed channel=sms since 2026-...``."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("status", self.status),
                ("channel", self.channel),
                ("thread", self.thread_id),
                ("correlation", self.correlation_id),
            )
            if value is not None
        ]
        for name, at in (("since", self.since), ("until", self.until)):
            if at is not None:
                stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                parts.append(f"{name}={stamp}")
        return " ".join(parts) or "all deliveries"

    def query_string(self) -> dict[str, str]:
        """The filter as query-string fields (times as ISO 8601 UTC), for links and forms."""
        fields: dict[str, str] = {}
        for name, value in (
            ("status", self.status),
            ("channel", self.channel),
            ("thread", self.thread_id),
            ("correlation", self.correlation_id),
        ):
            if value is not None:
                fields[name] = str(value)
        for name, at in (("since", self.since), ("until", self.until)):
            if at is not None:
                fields[name] = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        return fields
