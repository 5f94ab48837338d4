"""The operator's view across people: the one memory path that is not bound to a scope.

Agent code never needs this; ``relaybox memory ...`` uses it to answer "what does the agent
remember about this person?" and to forget a person on request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from relaybox.memory.notes import Note
from relaybox.memory.scope import check_resource_id
from relaybox.memory.working import RESOURCE_WIDE, WorkingMemory
from relaybox.store import Store, Tx
from relaybox.store.base import Unit


@dataclass(frozen=True, slots=True)
class ResourceSummary:
    resource_id: str
    documents: int
    notes: int
    messages: int
    last_at: float | None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    thread_id: str
    messages: int
    last_at: float


@dataclass(frozen=True)
class ResourceMemory:
    """Everything stored about one person: their documents, notes and threads."""

    resource_id: str
    working: WorkingMemory | None  # the person's own document
    thread_working: dict[str, WorkingMemory] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    threads: list[ThreadSummary] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def doc(w: WorkingMemory | None) -> dict[str, Any] | None:
            if w is None:
                return None
            return {"document": w.document, "version": w.version, "updated_at": w.updated_at}

        return {
            "resource_id": self.resource_id,
            "working": doc(self.working),
            "thread_working": {t: doc(w) for t, w in self.thread_working.items()},
            "notes": [
                {
                    "id": n.id,
                    "text": n.text,
                    "thread_id": n.thread_id,
                    "metadata": n.metadata,
                    "created_at": n.created_at,
                }
                for n in self.notes
            ],
            "threads": [
                {"thread_id": t.thread_id, "messages": t.messages, "last_at": t.last_at}
                for t in self.threads
            ],
        }


def list_resources(limit: int = 100) -> Unit[list[ResourceSummary]]:
    """Read unit: people with memory, most recently active first."""

    def unit(tx: Tx) -> list[ResourceSummary]:
        return [
            ResourceSummary(
                resource_id=row["resource_id"],
                documents=int(row["documents"]),
                notes=int(row["notes"]),
                messages=int(row["messages"]),
                last_at=None if row["last_at"] is None else float(row["last_at"]),
            )
            for row in tx.fetch_all("admin_resources", {"limit": limit})
        ]

    return unit


def show_resource(resource_id: str, *, notes_limit: int = 100) -> Unit[ResourceMemory]:
    """Read unit: everything stored about one person."""
    resource_id = check_resource_id(resource_id)

    def unit(tx: Tx) -> ResourceMemory:
        key = {"resource_id": resource_id}
        own: WorkingMemory | None = None
        per_thread: dict[str, WorkingMemory] = {}
        for row in tx.fetch_all("admin_working_of_resource", key):
            memory = WorkingMemory(
                json.loads(row["document"]), int(row["version"]), float(row["updated_at"])
            )
            if row["thread_id"] == RESOURCE_WIDE:
                own = memory
            else:
                per_thread[row["thread_id"]] = memory
        notes = [
            Note.from_row(row)
            for row in reversed(tx.fetch_all("recent_notes", {**key, "limit": notes_limit}))
        ]
        threads = [
            ThreadSummary(row["thread_id"], int(row["messages"]), float(row["last_at"]))
            for row in tx.fetch_all("admin_threads_of_resource", key)
        ]
        return ResourceMemory(resource_id, own, per_thread, notes, threads)

    return unit


def forget_resource(resource_id: str) -> Unit[dict[str, int]]:
    """Write unit: delete everything stored about one person, in one transaction."""
    resource_id = check_resource_id(resource_id)

    def unit(tx: Tx) -> dict[str, int]:
        key = {"resource_id": resource_id}
        return {
            "documents": tx.execute("admin_forget_working", key),
            "notes": tx.execute("admin_forget_notes", key),
            "messages": tx.execute("admin_forget_messages", key),
        }

    return unit


class MemoryAdmin:
    """Cross-person memory access for operators (``relaybox memory ...``)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def resources(self, limit: int = 100) -> list[ResourceSummary]:
        return await self._store.read(list_resources(limit))

    async def show(self, resource_id: str) -> ResourceMemory:
        return await self._store.read(show_resource(resource_id))

    async def forget(self, resource_id: str) -> dict[str, int]:
        return await self._store.run(forget_resource(resource_id))
