"""Recording inbound messages once, and answering them in the same transaction.

* :class:`RecordInbound` stores a message keyed by ``(channel, external_id)``: the platform's
  message id. The same message again (a webhook retried, a replay after a restart) is not
  stored twice; the caller learns it is a duplicate and gets the first record's correlation id.
* :class:`ReplyToInbound` is the transactional outbox: it enqueues the reply *and* marks the
  message answered in one unit of work, so either both are stored or neither is. The reply
  carries the message's correlation id and links back to it (``deliveries.inbound_id``).
* :func:`mark_no_reply_needed` says "handled, nothing to send", so the message is not
  reported as silent loss by ``relaybox gaps``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from relaybox import validation
from relaybox.errors import InvalidInbound, InvalidState, NotFound
from relaybox.inbound.models import InboundMessage, InboundResult
from relaybox.outbox.enqueue import EnqueueResult, EnqueueUnit, ReplyRequest
from relaybox.outbox.guid import derived_reply_key
from relaybox.store import Tx
from relaybox.store.base import Unit

MAX_ID_CHARS = 512
MAX_TEXT_BYTES = 262_144
MAX_META_BYTES = 65_536


@dataclass(frozen=True)
class InboundRequest:
    """A validated inbound message, ready to store."""

    channel: str
    external_id: str
    thread_id: str
    resource_id: str
    text: str | None
    meta_json: str | None
    correlation_id: str


def build_inbound(
    *,
    channel: str,
    external_id: str,
    thread_id: str,
    resource_id: str,
    text: str | bytes | None = None,
    meta: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> InboundRequest:
    """Check an inbound message; raise :class:`InvalidInbound` with one clear line if bad."""
    return InboundRequest(
        channel=_identifier("channel", channel),
        external_id=_identifier("external id", external_id),
        thread_id=_identifier("thread id", thread_id),
        resource_id=_identifier("resource id", resource_id),
        text=_text(text),
        meta_json=_meta(meta),
        correlation_id=validation.correlation_id(correlation_id, error=InvalidInbound),
    )


@dataclass(frozen=True)
class RecordInbound:
    """Unit: store an inbound message once; optionally enqueue its reply in the same unit."""

    request: InboundRequest
    reply: ReplyRequest | None = None
    reply_key_given: bool = False
    now: float = field(default_factory=time.time)

    @property
    def lock_key(self) -> str:
        """The unique (channel, external id) row it inserts: batches take these in order."""
        return f"inbound\x1f{self.request.channel}\x1f{self.request.external_id}"

    def __call__(self, tx: Tx) -> InboundResult:
        request = self.request
        params = {
            "channel": request.channel,
            "external_id": request.external_id,
            "thread_id": request.thread_id,
            "resource_id": request.resource_id,
            "body": request.text,
            "meta": request.meta_json,
            "correlation_id": request.correlation_id,
            "now": self.now,
        }
        owner = tx.fetch_one("inbound_correlation_owner", params)
        if owner is not None:
            raise InvalidInbound(
                f"correlation id {request.correlation_id!r} already belongs to inbound message"
                f" {owner['id']}; leave it out to get a new one"
            )
        row = tx.fetch_one("insert_inbound", params)
        if row is None:
            first = tx.fetch_one("note_inbound_duplicate", params)
            assert first is not None  # the conflicting row exists inside this transaction
            return InboundResult(_status(tx, int(first["id"])), duplicate=True)
        reply = None
        if self.reply is not None:
            reply = enqueue_reply(tx, row, self.reply, self.reply_key_given, self.now)
        return InboundResult(_status(tx, int(row["id"])), duplicate=False, reply=reply)


@dataclass(frozen=True)
class ReplyToInbound:
    """Unit: enqueue the reply to an inbound message and mark it answered, atomically."""

    inbound_id: int
    reply: ReplyRequest
    reply_key_given: bool = False
    now: float = field(default_factory=time.time)

    def __call__(self, tx: Tx) -> tuple[InboundMessage, EnqueueResult]:
        row = tx.fetch_one("inbound_by_id", {"id": self.inbound_id})
        if row is None:
            raise NotFound(f"inbound message {self.inbound_id} does not exist")
        result = enqueue_reply(tx, row, self.reply, self.reply_key_given, self.now)
        return _status(tx, self.inbound_id), result


def enqueue_reply(
    tx: Tx, inbound: dict[str, Any], reply: ReplyRequest, key_given: bool, now: float
) -> EnqueueResult:
    """Enqueue ``reply`` as the answer to ``inbound`` inside the caller's transaction.

    The reply carries the message's correlation id. Without a reply key of its own it gets
    ``rbx-<store identity>:inbound-<id>:reply``, so an agent that crashes after this commit and
    runs again gets the stored reply back instead of a second copy, and no other store's reply
    ever has the same key (or GUIDs, see :mod:`relaybox.outbox.guid`).
    """
    inbound_id = int(inbound["id"])
    request = replace(
        reply,
        correlation_id=inbound["correlation_id"],
        reply_key=reply.reply_key if key_given else _default_reply_key(tx, inbound_id),
    )
    result = EnqueueUnit(request, now)(tx)
    if result.created:
        tx.execute(
            "link_delivery_to_inbound",
            {"inbound_id": inbound_id, "delivery_id": result.delivery.id},
        )
    tx.execute("mark_inbound_reply_enqueued", {"id": inbound_id, "now": now})
    return result


def _default_reply_key(tx: Tx, inbound_id: int) -> str:
    # Before migration 0006 the default key was ``inbound-<id>:reply``: a message answered
    # then keeps that key, so answering it again after the upgrade still finds its reply.
    legacy = f"inbound-{inbound_id}:reply"
    if tx.fetch_one("delivery_by_reply_key", {"reply_key": legacy}) is not None:
        return legacy
    return derived_reply_key(tx, legacy)


def mark_no_reply_needed(inbound_id: int, reason: str | None = None) -> Unit[InboundMessage]:
    """Unit: the message was handled and needs no reply (it is then never a gap)."""
    note = None if reason is None else _note(reason)

    def unit(tx: Tx) -> InboundMessage:
        now = time.time()
        if tx.execute("mark_inbound_no_reply", {"id": inbound_id, "now": now, "note": note}):
            return _status(tx, inbound_id)
        row = tx.fetch_one("inbound_by_id", {"id": inbound_id})
        if row is None:
            raise NotFound(f"inbound message {inbound_id} does not exist")
        if row["status"] == "no_reply_needed":
            return _status(tx, inbound_id)  # marking twice is harmless
        raise InvalidState(
            f"inbound message {inbound_id} already has a reply enqueued; it cannot be marked"
            " 'no reply needed'"
        )

    return unit


def _status(tx: Tx, inbound_id: int) -> InboundMessage:
    row = tx.fetch_one("inbound_status_by_id", {"id": inbound_id})
    if row is None:
        raise NotFound(f"inbound message {inbound_id} does not exist")
    return InboundMessage.from_row(row)


def _identifier(what: str, value: object) -> str:
    return validation.identifier(what, value, error=InvalidInbound, max_chars=MAX_ID_CHARS)


def _text(text: object) -> str | None:
    if text is None:
        return None
    return validation.text(
        "text", text, error=InvalidInbound, max_bytes=MAX_TEXT_BYTES, allow_empty=True
    )


def _meta(meta: object) -> str | None:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise InvalidInbound(f"meta must be a dict of JSON values, not {type(meta).__name__}")
    try:
        encoded = json.dumps(meta, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInbound(f"meta is not plain JSON: {error}") from None
    size = len(encoded.encode("utf-8"))
    if size > MAX_META_BYTES:
        raise InvalidInbound(f"meta is {size} bytes as JSON; the limit is {MAX_META_BYTES}")
    return encoded


def _note(reason: object) -> str:
    if not isinstance(reason, str):
        raise InvalidInbound(f"reason must be a string, not {type(reason).__name__}")
    return validation.text(
        "reason", reason, error=InvalidInbound, max_bytes=4 * MAX_ID_CHARS, allow_empty=True
    )
