"""Conversation history: the messages of one person in one thread, append-only.

Every read filters by resource *and* thread: in a group chat each person's history is their
own (use a group's id as the resource if you want one shared history).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relaybox.config import MemoryConfig
from relaybox.memory.errors import InvalidMemory
from relaybox.memory.records import check_limit, check_text, decode_metadata, encode_metadata
from relaybox.memory.scope import Scope, require_scope
from relaybox.store import Store, Tx

MAX_ROLE_CHARS = 64
_FAR_FUTURE = 1e18  # "no upper bound", as a plain number both stores compare alike


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    role: str  # "user", "assistant", "tool", ...
    content: str
    metadata: dict[str, Any] | None
    created_at: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        return cls(
            id=int(row["id"]),
            role=row["role"],
            content=row["content"],
            metadata=decode_metadata(row["metadata"]),
            created_at=float(row["created_at"]),
        )


class History:
    """The history of ``scope`` (person + thread); get one from ``rb.memory(scope).history``."""

    def __init__(self, store: Store, scope: Scope, limits: MemoryConfig) -> None:
        self._store = store
        self._scope = require_scope(scope)
        self._limits = limits

    def _key(self) -> dict[str, str]:
        return {"resource_id": self._scope.resource_id, "thread_id": self._scope.thread_id}

    async def append(
        self, role: str, content: str, *, metadata: Mapping[str, Any] | None = None
    ) -> Message:
        limit = self._limits.max_message_bytes
        params = {
            **self._key(),
            "role": _check_role(role),
            "content": check_text("message", content, limit, "memory.max_message_bytes"),
            "metadata": encode_metadata(metadata, limit),
        }

        def unit(tx: Tx) -> Message:
            row = tx.fetch_one("insert_message", {**params, "now": time.time()})
            assert row is not None
            return Message.from_row(row)

        return await self._store.run(unit)

    async def recent(self, limit: int = 20) -> list[Message]:
        """The latest ``limit`` messages of this thread, oldest first (ready for a prompt)."""
        check_limit(limit)
        params = {**self._key(), "limit": limit}

        def unit(tx: Tx) -> list[Message]:
            rows = tx.fetch_all("recent_messages", params)
            return [Message.from_row(row) for row in reversed(rows)]

        return await self._store.read(unit)

    async def between(
        self, since: float, until: float | None = None, *, limit: int = 1000
    ) -> list[Message]:
        """Messages with ``since <= created_at < until`` (epoch seconds), oldest first."""
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
