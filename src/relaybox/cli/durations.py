"""Durations on the command line: ``90s``, ``5m``, ``1h``, ``30d``, ``2w`` or plain seconds."""

from __future__ import annotations

import re

from relaybox.cli.app import fail

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
MAX_SECONDS = 100 * 365 * 86400.0  # a century: longer is a typo, and overflows time arithmetic


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raise ValueError with a clear message if it is not a duration."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; use a number with s, m, h, d or w (e.g. 90s, 5m, 1h, 30d)"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than the 100 years a duration may be")
    return seconds


def seconds_of(value: str | None, option: str) -> float | None:
    """A duration option in seconds (None if not given); a bad one fails with one line."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise fail(f"{option}: {error}") from None
