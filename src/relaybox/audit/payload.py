"""Payload capture for the failure audit: encode anything, keep it small, keep its fingerprint.

A failure row keeps the payload that triggered it, so an operator can reproduce the failure.
Payloads can be large (images, long transcripts), so past a size limit only the head is kept,
followed by a marker; the original size and SHA-256 are always stored, which lets an operator
check a copy found elsewhere (or the blob behind ``payload_ref``) against the row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("relaybox.audit")

TRUNCATION_MARKER = "…[truncated by relaybox: {size} bytes, sha256 {sha256}]"


@dataclass(frozen=True, slots=True)
class CapturedPayload:
    text: str | None  # what is stored (possibly cut)
    kind: str | None  # json | text | base64
    size: int | None  # bytes of the full encoded payload
    sha256: str | None  # of the full encoded payload
    truncated: bool


NO_PAYLOAD = CapturedPayload(None, None, None, None, False)


def capture(payload: Any, max_bytes: int) -> CapturedPayload:
    """Encode ``payload`` and cut it to ``max_bytes``; never raises for any input.

    ``str`` is kept as text, ``bytes`` as UTF-8 text when valid and base64 otherwise,
    anything else as JSON (objects JSON does not know are written with ``repr``).
    """
    if payload is None:
        return NO_PAYLOAD
    kind, text = encode(payload)
    raw = text.encode("utf-8", errors="surrogatepass")
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) <= max_bytes:
        return CapturedPayload(_clean(text), kind, len(raw), digest, False)
    marker = TRUNCATION_MARKER.format(size=len(raw), sha256=digest)
    head = cut_utf8(raw, max(0, max_bytes - len(marker.encode("utf-8"))))
    return CapturedPayload(_clean(head) + marker, kind, len(raw), digest, True)


def encode(payload: Any) -> tuple[str, str]:
    """Return ``(kind, text)`` for any payload."""
    if isinstance(payload, str):
        return "text", payload
    if isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
        try:
            return "text", data.decode("utf-8")
        except UnicodeDecodeError:
            return "base64", base64.b64encode(data).decode("ascii")
    try:
        return "json", json.dumps(payload, ensure_ascii=False, sort_keys=True, default=repr)
    except Exception as error:  # noqa: BLE001 - any payload must still be recorded somehow
        # Unsortable keys, circular references, a raising __repr__: keep what can be read.
        log.debug("payload is not JSON-encodable (%s); keeping its repr", error)
        return "text", _safe_repr(payload)


def cut_text(text: str, max_bytes: int) -> str:
    """Cut ``text`` to ``max_bytes`` of UTF-8, marking the cut (messages, tracebacks)."""
    raw = text.encode("utf-8", errors="surrogatepass")
    if len(raw) <= max_bytes:
        return _clean(text)
    marker = f"…[truncated by relaybox: {len(raw)} bytes]"
    return _clean(cut_utf8(raw, max(0, max_bytes - len(marker.encode("utf-8"))))) + marker


def cut_utf8(raw: bytes, limit: int) -> str:
    """The longest prefix of ``raw`` within ``limit`` bytes that ends on a character boundary."""
    return raw[:limit].decode("utf-8", errors="ignore")


def _clean(text: str) -> str:
    # Stores reject NUL in text (PostgreSQL) and lone surrogates cannot be encoded: replace them.
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as error:  # noqa: BLE001 - a broken __repr__ must not lose the record
        log.debug("repr() of a payload failed: %s", error)
        return f"<unrepresentable {type(value).__name__}: {type(error).__name__}>"
