"""Conversation history: the entries of one person in one thread.

Every read and write filters by resource *and* thread: in a group chat each person's history
is their own (use a group's id as the resource if you want one shared history).

An entry has a role and content, which is text (a ``str``) or structured JSON (anything
else: a tool call, a tool result, a framework's message object, converted by
:func:`relaybox.jsonvalue.to_json`). Inside a turn (``turn.history``) every entry is tagged
with the turn and its attempt and written only while that attempt holds the turn: when a
crashed attempt is run again, its entries are replaced by the new attempt's, so a retry never
leaves the same exchange twice (docs/turns.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from relaybox.config import MemoryConfig
from relaybox.errors import TurnLeaseLost
from relaybox.jsonvalue import NotJSON, dumps
from relaybox.memory.errors import InvalidMemory
from relaybox.memory.records import check_limit, check_text, decode_metadata, encode_metadata
from relaybox.memory.scope import Scope, require_scope
from relaybox.store import Store, Tx
from relaybox.store.base import Unit

MAX_ROLE_CHARS = 64
_FAR_FUTURE = 1e18  # "no upper bound", as a plain number both stores compare alike


@dataclass(frozen=True, slots=True)
class Message:
    """One history entry. ``content`` is a ``str`` for text entries, else the stored JSON."""

    id: int
    role: str  # "user", "assistant", "tool", ...
    content: Any
    metadata: dict[str, Any] | None
    created_at: float
    turn_id: int | None = None  # the turn that wrote it (None: written outside a turn)
    attempt: int | None = None

    @property
    def structured(self) -> bool:
        return not isinstance(self.content, str)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        content = row["content"]
        if row.get("content_type") == "json":
            content = json.loads(content)
        return cls(
            id=int(row["id"]),
            role=row["role"],
            content=content,
            metadata=decode_metadata(row["metadata"]),
            created_at=float(row["created_at"]),
            turn_id=None if row.get("turn_id") is None else int(row["turn_id"]),
            attempt=None if row.get("attempt") is None else int(row["attempt"]),
        )


@dataclass(frozen=True, slots=True)
class TurnFence:
    """Which turn attempt writes: entries are stored only while it holds ``(turn_id, epoch)``."""

    turn_id: int
    epoch: int


Entry = tuple[str, Any] | tuple[str, Any, Mapping[str, Any] | None]


class History:
    """The history of ``scope`` (person + thread); get one from ``rb.memory(scope).history``
    (or ``turn.history`` inside a turn, where appends are tagged with the turn's attempt).

    >>> await history.append("user", "Book a table for two")            # doctest: +SKIP
    >>> await history.append("assistant", {"tool_call": {"name": "book", "args": {"n": 2}}})
    >>> [m.content for m in await history.recent(2)]                     # doctest: +SKIP
    """

    def __init__(
        self, store: Store, scope: Scope, limits: MemoryConfig, *, turn: TurnFence | None = None
    ) -> None:
        self._store = store
        self._scope = require_scope(scope)
        self._limits = limits
        self._turn = turn

    def _key(self) -> dict[str, str]:
        return {"resource_id": self._scope.resource_id, "thread_id": self._scope.thread_id}

    def entry_params(
        self, role: str, content: Any, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Check one entry; the parameters of its insert (used by the turn's reply unit)."""
        limit = self._limits.max_message_bytes
        if isinstance(content, str | bytes | bytearray):  # bytes: refused by check_text
            text, kind = check_text("message", content, limit, "memory.max_message_bytes"), "text"
        else:
            try:
                text, kind = dumps(content, "message content"), "json"
            except NotJSON as error:
                raise InvalidMemory(str(error)) from None
            if len(text.encode("utf-8")) > limit:
                raise InvalidMemory(
                    f"message content is over {limit} bytes as JSON (memory.max_message_bytes)"
                )
        return {
            **self._key(),
            "role": _check_role(role),
            "content": text,
            "content_type": kind,
            "metadata": encode_metadata(metadata, limit),
        }

    def insert_unit(self, entries: list[dict[str, Any]]) -> Unit[list[Message]]:
        """A unit of work that stores checked entries (in order) and returns them."""
        fence = self._turn

        def unit(tx: Tx) -> list[Message]:
            now = time.time()
            stored = []
            for params in entries:
                if fence is None:
                    row = tx.fetch_one("insert_message", {**params, "now": now})
                else:
                    row = tx.fetch_one(
                        "insert_turn_message",
                        {**params, "now": now, "turn_id": fence.turn_id, "epoch": fence.epoch},
                    )
                    if row is None:
                        raise TurnLeaseLost(
                            f"turn {fence.turn_id} was taken over by another attempt; this"
                            " attempt's history entry was not stored"
                        )
                assert row is not None
                stored.append(Message.from_row(row))
            return stored

        return unit

    async def append(
        self, role: str, content: Any, *, metadata: Mapping[str, Any] | None = None
    ) -> Message:
        """Add one entry: text (``str``) or structured content (any JSON-convertible value)."""
        params = self.entry_params(role, content, metadata)
        return (await self._store.run(self.insert_unit([params])))[0]

    async def extend(self, entries: Iterable[Entry]) -> list[Message]:
        """Add several entries ``(role, content[, metadata])`` in one transaction, in order."""
        params = [self.entry_params(*entry) for entry in entries]
        if not params:
            return []
        return await self._store.run(self.insert_unit(params))

    async def recent(self, limit: int = 20) -> list[Message]:
        """The latest ``limit`` entries of this thread, oldest first (ready for a prompt)."""
        check_limit(limit)
        params = {**self._key(), "limit": limit}

        def unit(tx: Tx) -> list[Message]:
            rows = tx.fetch_all("recent_messages", params)
            return [Message.from_row(row) for row in reversed(rows)]

        return await self._store.read(unit)

    async def pop(self) -> Message | None:
        """Remove and return the latest entry of this thread (None if there is none)."""
        params = self._key()

        def unit(tx: Tx) -> Message | None:
            row = tx.fetch_one("pop_message", params)
            return None if row is None else Message.from_row(row)

        return await self._store.run(unit)

    async def clear(self) -> int:
        """Delete every entry of this person in this thread; return how many."""
        params = self._key()
        deleted: int = await self._store.run(lambda tx: tx.execute("clear_messages", params))
        return deleted

    async def between(
        self, since: float, until: float | None = None, *, limit: int = 1000
    ) -> list[Message]:
        """Entries with ``since <= created_at < until`` (epoch seconds), oldest first."""
        check_limit(limit)
        for name, value in (("since", since), ("until", until)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise InvalidMemory(f"{name} must be a finite number of epoch seconds")
        params = {
            **self._key(),
            "since": since,
            "until": _FAR_FUTURE if until is None else until,
            "limit": limit,
        }

        def unit(tx: Tx) -> list[Message]:
            return [Message.from_row(row) for row in tx.fetch_all("messages_between", params)]

        return await self._store.read(unit)


def _check_role(role: object) -> str:
    if not isinstance(role, str) or not role.strip():
        raise InvalidMemory("a message role must be a non-empty string such as 'user'")
    if len(role) > MAX_ROLE_CHARS:
        raise InvalidMemory(f"a message role is at most {MAX_ROLE_CHARS} characters")
    return role
