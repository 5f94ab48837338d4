"""Shared checks and row mapping for notes and history (text size, JSON metadata)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from relaybox import validation
from relaybox.jsonvalue import NotJSON, dumps
from relaybox.memory.errors import InvalidMemory


def check_text(what: str, text: object, max_bytes: int, limit_name: str) -> str:
    if isinstance(text, bytes):  # memory takes str only (bytes are refused, not decoded)
        raise InvalidMemory(f"{what} must be text, not bytes")
    return validation.text(
        what, text, error=InvalidMemory, max_bytes=max_bytes, limit_name=limit_name
    )


def encode_metadata(metadata: object, max_bytes: int) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidMemory(f"metadata must be a JSON object, not {type(metadata).__name__}")
    try:
        text = dumps(metadata, "metadata")
    except NotJSON as error:
        raise InvalidMemory(str(error)) from None
    if len(text.encode("utf-8")) > max_bytes:
        raise InvalidMemory(f"metadata is over {max_bytes} bytes as JSON")
    return text


def decode_metadata(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidMemory(f"limit must be a whole number of at least 1 (got {limit!r})")
