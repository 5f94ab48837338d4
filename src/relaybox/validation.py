"""Validation of identifiers and texts, and correlation ids: one set of rules for every capability.

An *identifier* (thread id, recipient, resource id, reply key, step id, channel, external id,
correlation id, task key, ...) is a non-empty string of at most :data:`MAX_ID_CHARS` characters
of valid UTF-8 (no lone surrogates) and no NUL character (PostgreSQL cannot store NUL in text,
SQLite would store it and every later comparison would be surprising). A *text* (a reply part,
an inbound message, a note) follows the same encoding rules, with a size limit in UTF-8 bytes;
``bytes`` are accepted when they are UTF-8.

Each capability raises its own error class (``InvalidReply``, ``InvalidInbound``, ...), so the
functions take it as ``error``; the message is the same one-line sentence everywhere.

Correlation ids are created only by :func:`new_correlation_id` (a random UUID), and checked by
:func:`correlation_id`, so every record a message causes carries an id of the same shape.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from relaybox.errors import RelayboxError

MAX_ID_CHARS = 512

ErrorType = type[RelayboxError]


def identifier(what: str, value: object, *, error: ErrorType, max_chars: int = MAX_ID_CHARS) -> str:
    """``value`` if it is a valid identifier, else ``error`` with one line saying why."""
    if not isinstance(value, str) or not value.strip():
        raise error(f"{what} must be a non-empty string")
    if len(value) > max_chars:
        raise error(f"{what} is {len(value)} characters; the limit is {max_chars}")
    _encoded(what, value, error)
    if "\x00" in value:
        raise error(f"{what} contains a NUL character")
    return value


def optional_identifier(what: str, value: object, *, error: ErrorType) -> str | None:
    return None if value is None else identifier(what, value, error=error)


def text(
    what: str,
    value: object,
    *,
    error: ErrorType,
    max_bytes: int,
    limit_name: str | None = None,
    allow_empty: bool = False,
) -> str:
    """``value`` (``str``, or UTF-8 ``bytes``) as text within ``max_bytes``, else ``error``."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise error(f"{what} is not valid UTF-8 (bad byte at offset {bad.start})") from None
    if not isinstance(value, str):
        raise error(f"{what} must be text, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise error(f"{what} is empty")
    size = len(_encoded(what, value, error))
    if size > max_bytes:
        limit = f" ({limit_name})" if limit_name else ""
        raise error(f"{what} is {size} bytes; the limit is {max_bytes}{limit}")
    if "\x00" in value:
        raise error(f"{what} contains a NUL character")
    return value


def is_http_url(value: str) -> bool:
    """An ``http://`` or ``https://`` URL with a host (``"http://"`` alone is not one)."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def new_correlation_id() -> str:
    """A fresh correlation id: everything one inbound message causes carries it."""
    return str(uuid.uuid4())


def correlation_id(value: object, *, error: ErrorType) -> str:
    """The caller's correlation id (checked as an identifier), or a new one if None."""
    if value is None:
        return new_correlation_id()
    return identifier("correlation id", value, error=error)


def _encoded(what: str, value: str, error: ErrorType) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as bad:
        raise error(
            f"{what} is not valid UTF-8 text (lone surrogate at position {bad.start})"
        ) from None
