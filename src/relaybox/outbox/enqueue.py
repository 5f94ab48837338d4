"""Enqueue: validate a reply, then store it and all its parts in one transaction."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from relaybox import validation
from relaybox.config import ChannelConfig
from relaybox.errors import InvalidReply, ReplyKeyConflict
from relaybox.models import Delivery, Part
from relaybox.observability.tracing import current_traceparent
from relaybox.outbox.guid import part_guid
from relaybox.store import Tx
from relaybox.validation import new_correlation_id

MAX_FIELD_CHARS = 512  # thread ids, recipients, keys: identifiers, not content


@dataclass(frozen=True)
class ReplyRequest:
    """A validated reply, ready to store."""

    channel: str
    thread_id: str
    recipient: str
    resource_id: str
    parts: tuple[str, ...]
    reply_key: str
    correlation_id: str
    content_hash: str
    max_attempts: int
    max_age_seconds: float | None
    supersede: bool = False
    trace_context: str | None = None  # traceparent of the caller's span (OpenTelemetry)


@dataclass(frozen=True)
class EnqueueResult:
    delivery: Delivery
    created: bool  # False: the reply key was enqueued before; this is that delivery
    superseded: tuple[int, ...] = ()  # queued replies in the thread this one made stale


def build_request(
    channel: ChannelConfig,
    *,
    thread_id: str,
    recipient: str,
    parts: Sequence[str | bytes],
    resource_id: str | None = None,
    reply_key: str | None = None,
    correlation_id: str | None = None,
    supersede: bool = False,
) -> ReplyRequest:
    """Check a reply against the channel's limits; raise :class:`InvalidReply` if it is bad."""
    thread_id = _identifier("thread id", thread_id)
    recipient = _identifier("recipient", recipient)
    resource_id = _identifier("resource id", resource_id) if resource_id is not None else recipient
    if reply_key is not None:
        reply_key = _identifier("reply key", reply_key)
    if correlation_id is not None:
        correlation_id = _identifier("correlation id", correlation_id)
    if isinstance(parts, str | bytes) or not parts:
        raise InvalidReply("a reply needs at least one part")
    if len(parts) > channel.max_parts:
        raise InvalidReply(
            f"a reply has {len(parts)} parts; channel {channel.name!r} allows {channel.max_parts}"
        )
    texts = tuple(
        piece
        for number, part in enumerate(parts, 1)
        for piece in _fit(number, _part_text(number, part, channel), channel)
    )
    if len(texts) > channel.max_parts:
        raise InvalidReply(
            f"split to the channel's {channel.max_part_chars}-character limit, the reply has"
            f" {len(texts)} parts; channel {channel.name!r} allows {channel.max_parts}"
        )
    content = json.dumps(
        [channel.name, thread_id, recipient, resource_id, texts], ensure_ascii=False
    ).encode("utf-8")
    return ReplyRequest(
        channel=channel.name,
        thread_id=thread_id,
        recipient=recipient,
        resource_id=resource_id,
        parts=texts,
        reply_key=reply_key or f"auto-{uuid.uuid4()}",
        correlation_id=correlation_id or new_correlation_id(),
        content_hash=hashlib.sha256(content).hexdigest(),
        max_attempts=channel.retry.max_attempts,
        max_age_seconds=channel.max_age_seconds,
        supersede=supersede,
        trace_context=current_traceparent(),
    )


@dataclass(frozen=True)
class EnqueueUnit:
    """The unit of work that stores a reply; callable inside a larger transaction too."""

    request: ReplyRequest
    now: float = field(default_factory=time.time)

    def __call__(self, tx: Tx) -> EnqueueResult:
        request, now = self.request, self.now
        row = tx.fetch_one(
            "insert_delivery",
            {
                "reply_key": request.reply_key,
                "content_hash": request.content_hash,
                "channel": request.channel,
                "thread_id": request.thread_id,
                "recipient": request.recipient,
                "resource_id": request.resource_id,
                "correlation_id": request.correlation_id,
                "part_count": len(request.parts),
                "max_attempts": request.max_attempts,
                "now": now,
                "expires_at": now + request.max_age_seconds if request.max_age_seconds else None,
                "trace_context": request.trace_context,
            },
        )
        if row is None:
            return EnqueueResult(_existing(tx, request), created=False)
        delivery_id = int(row["id"])
        parts = [
            Part(index=index, guid=part_guid(request.reply_key, index), body=text)
            for index, text in enumerate(request.parts)
        ]
        # One driver call for all parts (SQLite: one prepared statement; psycopg: pipelined).
        tx.execute_many(
            "insert_part",
            [
                {"delivery_id": delivery_id, "part_index": p.index, "guid": p.guid, "body": p.body}
                for p in parts
            ],
        )
        superseded: tuple[int, ...] = ()
        if request.supersede:
            superseded = _supersede(tx, request, delivery_id, now)
        return EnqueueResult(Delivery.from_row(row, tuple(parts)), True, superseded)


@dataclass(frozen=True)
class EnqueueManyUnit:
    """Store many replies in one transaction, each exactly as :class:`EnqueueUnit` would.

    Per reply the outcome is the same as enqueueing it alone, in list order: a reply key
    already stored (or earlier in the same list) returns that delivery with ``created`` False,
    or raises :class:`ReplyKeyConflict` for other content, which rolls back the whole batch.
    Over a network (PostgreSQL) the batch takes two statements whatever its size (the
    deliveries, then all their parts, bound as arrays); in process (SQLite) a loop of single
    enqueues costs no round trips and is what runs.
    """

    requests: tuple[ReplyRequest, ...]
    now: float = field(default_factory=time.time)

    def __call__(self, tx: Tx) -> list[EnqueueResult]:
        if not self.requests:
            return []
        if not tx.network_round_trips:
            return [EnqueueUnit(request, self.now)(tx) for request in self.requests]
        return self._set_based(tx)

    def _set_based(self, tx: Tx) -> list[EnqueueResult]:
        requests, now = self.requests, self.now
        rows = tx.fetch_all(
            "insert_deliveries",
            {
                "reply_keys": [r.reply_key for r in requests],
                "content_hashes": [r.content_hash for r in requests],
                "channels": [r.channel for r in requests],
                "thread_ids": [r.thread_id for r in requests],
                "recipients": [r.recipient for r in requests],
                "resource_ids": [r.resource_id for r in requests],
                "correlation_ids": [r.correlation_id for r in requests],
                "part_counts": [len(r.parts) for r in requests],
                "max_attempts": [r.max_attempts for r in requests],
                "expires_at": [
                    now + r.max_age_seconds if r.max_age_seconds else None for r in requests
                ],
                "now": now,
            },
        )
        inserted = {row["reply_key"]: row for row in rows}
        # A reply key twice in the list: the first one is inserted, the later ones find it.
        first_of_key: dict[str, int] = {}
        for position, request in enumerate(requests):
            first_of_key.setdefault(request.reply_key, position)
        parts: dict[int, tuple[Part, ...]] = {}
        for position, request in enumerate(requests):
            if request.reply_key in inserted and first_of_key[request.reply_key] == position:
                parts[position] = tuple(
                    Part(index=index, guid=part_guid(request.reply_key, index), body=text)
                    for index, text in enumerate(request.parts)
                )
        new_parts = [
            (int(inserted[requests[position].reply_key]["id"]), part)
            for position, own in parts.items()
            for part in own
        ]
        if new_parts:
            tx.execute(
                "insert_parts",
                {
                    "delivery_ids": [delivery_id for delivery_id, _ in new_parts],
                    "part_indexes": [part.index for _, part in new_parts],
                    "guids": [part.guid for _, part in new_parts],
                    "bodies": [part.body for _, part in new_parts],
                },
            )
        results: list[EnqueueResult] = []
        for position, request in enumerate(requests):
            if position not in parts:
                results.append(EnqueueResult(_existing(tx, request), created=False))
                continue
            row = inserted[request.reply_key]
            superseded: tuple[int, ...] = ()
            if request.supersede:
                superseded = _supersede(tx, request, int(row["id"]), now)
            results.append(EnqueueResult(Delivery.from_row(row, parts[position]), True, superseded))
        return results


def _supersede(tx: Tx, request: ReplyRequest, delivery_id: int, now: float) -> tuple[int, ...]:
    stale = tx.fetch_all(
        "supersede_queued_in_thread",
        {
            "channel": request.channel,
            "thread_id": request.thread_id,
            "superseded_by": delivery_id,
            "now": now,
        },
    )
    return tuple(sorted(int(r["id"]) for r in stale))


def _existing(tx: Tx, request: ReplyRequest) -> Delivery:
    row = tx.fetch_one("delivery_by_reply_key", {"reply_key": request.reply_key})
    if row is None:  # pragma: no cover - the conflicting row cannot vanish inside one transaction
        raise ReplyKeyConflict(f"reply key {request.reply_key!r} conflicted but was not found")
    if row["content_hash"] != request.content_hash:
        raise ReplyKeyConflict(
            f"reply key {request.reply_key!r} was already used for a different reply"
            f" (delivery {row['id']}); use a new reply key for new content"
        )
    parts = tuple(
        Part(index=int(p["part_index"]), guid=p["guid"], body=p["body"])
        for p in tx.fetch_all("parts_of_delivery", {"delivery_id": row["id"]})
    )
    return Delivery.from_row(row, parts)


def _identifier(what: str, value: object) -> str:
    return validation.identifier(what, value, error=InvalidReply, max_chars=MAX_FIELD_CHARS)


def _part_text(number: int, part: object, channel: ChannelConfig) -> str:
    return validation.text(
        f"part {number}",
        part,
        error=InvalidReply,
        max_bytes=channel.max_part_bytes,
        limit_name=f"max_part_bytes of channel {channel.name!r}",
    )


def _fit(number: int, text: str, channel: ChannelConfig) -> list[str]:
    """``text`` as one part, or split to the platform's text limit if the channel opts in."""
    limit = channel.max_part_chars
    if limit is None or len(text) <= limit:
        return [text]
    if not channel.split_long_parts:
        raise InvalidReply(
            f"part {number} is {len(text)} characters; channel {channel.name!r}"
            f" ({channel.transport}) allows {limit} (max_part_chars): shorten it, split it,"
            " or set split_long_parts = true"
        )
    return split_text(text, limit)


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, at a line break or space if
    one is in the second half of the window, else mid-word.

    A pure function of its arguments: the same reply splits the same way in every process,
    so each piece keeps a stable index and therefore a stable GUID. Whitespace at a cut is
    dropped; no piece is empty.
    """
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = max(window.rfind("\n"), window.rfind(" "))
        if cut < max(1, limit // 2):
            cut = limit
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if piece:
            pieces.append(piece)
    if rest.strip():
        pieces.append(rest)
    return pieces
