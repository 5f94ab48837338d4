"""Observational notes: short facts the agent noticed about a person ("prefers mornings").

Notes belong to the person (resource), whichever chat they were noticed in; the thread is
kept to say where.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relaybox.config import MemoryConfig
from relaybox.memory.records import check_limit, check_text, decode_metadata, encode_metadata
from relaybox.memory.scope import Scope, require_scope
from relaybox.store import Store, Tx


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    text: str
    thread_id: str  # where it was observed
    metadata: dict[str, Any] | None
    created_at: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Note:
        return cls(
            id=int(row["id"]),
            text=row["note"],
            thread_id=row["thread_id"],
            metadata=decode_metadata(row["metadata"]),
            created_at=float(row["created_at"]),
        )


class Notes:
    """The notes of ``scope.resource_id``; get one from ``rb.memory(scope).notes``."""

    def __init__(self, store: Store, scope: Scope, limits: MemoryConfig) -> None:
        self._store = store
        self._scope = require_scope(scope)
        self._limits = limits

    async def add(self, text: str, *, metadata: Mapping[str, Any] | None = None) -> Note:
        params = {
            "resource_id": self._scope.resource_id,
            "thread_id": self._scope.thread_id,
            "note": check_text("note", text, self._limits.max_note_bytes, "memory.max_note_bytes"),
            "metadata": encode_metadata(metadata, self._limits.max_note_bytes),
        }

        def unit(tx: Tx) -> Note:
            row = tx.fetch_one("insert_note", {**params, "now": time.time()})
            assert row is not None
            return Note.from_row(row)

        return await self._store.run(unit)

    async def recent(self, limit: int = 50) -> list[Note]:
        """The person's latest ``limit`` notes, oldest first."""
        check_limit(limit)
        resource_id = self._scope.resource_id

        def unit(tx: Tx) -> list[Note]:
            rows = tx.fetch_all("recent_notes", {"resource_id": resource_id, "limit": limit})
            return [Note.from_row(row) for row in reversed(rows)]

        return await self._store.read(unit)
