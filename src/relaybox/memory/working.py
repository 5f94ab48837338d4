"""Working memory: one versioned JSON object per person (or per person and thread).

Updates never lose a write, across processes: :meth:`WorkingMemoryHandle.update` runs the
caller's function *inside one transaction* that holds the document's row lock (PostgreSQL
``SELECT ... FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``), so concurrent writers queue up instead
of overwriting each other, and nobody has to retry. A function that raises, or returns
something that is not a JSON object within the size limit, leaves the stored version as it
was. For slow work (an LLM summarising the document), read, work, then
:meth:`~WorkingMemoryHandle.replace` with the version you read: a compare-and-swap that raises
:class:`VersionConflict` if someone wrote in between. See docs/memory.md.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relaybox.jsonvalue import NotJSON, dumps
from relaybox.memory.errors import InvalidMemory, VersionConflict
from relaybox.memory.scope import Scope, require_scope
from relaybox.store import Store, Tx
from relaybox.store.base import Unit, locking
from relaybox.store.conflicts import run_retrying

RESOURCE_WIDE = ""  # thread key of the per-resource document (scopes refuse empty thread ids)

Document = dict[str, Any]
UpdateFn = Callable[[Document], Document]


@dataclass(frozen=True, slots=True)
class WorkingMemory:
    """A working-memory document and its version (0: never written)."""

    document: Document
    version: int
    updated_at: float | None


class WorkingMemoryHandle:
    """Working memory of one scope; get one from ``rb.memory(scope).working`` (the person's
    document) or ``.thread_working`` (``per_thread=True``: the person in this thread)."""

    def __init__(self, store: Store, scope: Scope, *, per_thread: bool, max_bytes: int) -> None:
        scope = require_scope(scope)
        self._store = store
        self._resource_id = scope.resource_id
        self._thread_key = scope.thread_id if per_thread else RESOURCE_WIDE
        self._max_bytes = max_bytes

    async def get(self) -> WorkingMemory:
        return await self._store.read(_read_unit(self._resource_id, self._thread_key))

    async def update(self, fn: UpdateFn) -> WorkingMemory:
        """Apply ``fn(document) -> new document`` atomically; returns what was stored.

        ``fn`` runs on the store's writer thread while the row is locked: keep it quick and
        free of I/O. It may run more than once if PostgreSQL reports a lock conflict.
        """
        if inspect.iscoroutinefunction(fn):
            raise InvalidMemory(
                "update() takes a plain function; for async work use get(), then"
                " replace(document, expected_version=...)"
            )
        unit = _update_unit(self._resource_id, self._thread_key, fn, self._max_bytes)
        return await run_retrying(self._store, unit)

    async def merge(self, patch: Mapping[str, Any]) -> WorkingMemory:
        """Apply a JSON merge patch (RFC 7396): nested objects merge, ``None`` deletes a key."""
        if not isinstance(patch, Mapping):
            raise InvalidMemory(f"a merge patch must be a JSON object, not {type(patch).__name__}")
        encode_document(patch, self._max_bytes, "merge patch")  # refuse a bad patch up front
        return await self.update(lambda document: merge_patch(document, patch))

    async def replace(self, document: Mapping[str, Any], *, expected_version: int) -> WorkingMemory:
        """Compare-and-swap: store ``document`` only if it is still at ``expected_version``."""
        text = encode_document(document, self._max_bytes)
        unit = _replace_unit(self._resource_id, self._thread_key, text, expected_version)
        return await run_retrying(self._store, unit)


def encode_document(document: object, max_bytes: int, what: str = "working memory") -> str:
    """The stored text of a document, or :class:`InvalidMemory` (nothing is stored)."""
    if not isinstance(document, Mapping):
        raise InvalidMemory(f"{what} must be a JSON object (a dict), not {type(document).__name__}")
    try:
        text = dumps(document, what)
    except NotJSON as error:
        raise InvalidMemory(str(error)) from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidMemory(
            f"{what} is {size} bytes as JSON; the limit is {max_bytes} (memory.max_document_bytes)"
        )
    return text


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch of ``target`` by ``patch`` (a new value; inputs untouched)."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _read_unit(resource_id: str, thread_key: str) -> Unit[WorkingMemory]:
    def unit(tx: Tx) -> WorkingMemory:
        row = tx.fetch_one("get_working", {"resource_id": resource_id, "thread_id": thread_key})
        return _from_row(row)

    return unit


def lock_key(resource_id: str, thread_key: str) -> str:
    """The row lock a working-memory write takes (the store orders a batch's locks by it)."""
    return f"memory.working\x1f{resource_id}\x1f{thread_key}"


def _update_unit(
    resource_id: str, thread_key: str, fn: UpdateFn, max_bytes: int
) -> Unit[WorkingMemory]:
    def unit(tx: Tx) -> WorkingMemory:
        current = _lock(tx, resource_id, thread_key)
        new = fn(current.document)
        if new is None:
            raise InvalidMemory("the update function returned None; return the new document")
        return _write(tx, resource_id, thread_key, encode_document(new, max_bytes), current.version)

    return locking(lock_key(resource_id, thread_key), unit)


def _replace_unit(
    resource_id: str, thread_key: str, text: str, expected_version: int
) -> Unit[WorkingMemory]:
    def unit(tx: Tx) -> WorkingMemory:
        current = _lock(tx, resource_id, thread_key)
        if current.version != expected_version:
            raise VersionConflict(
                f"working memory of {resource_id!r} is at version {current.version}, not"
                f" {expected_version}: read it again and reapply your change",
                expected=expected_version,
                actual=current.version,
            )
        return _write(tx, resource_id, thread_key, text, current.version)

    return locking(lock_key(resource_id, thread_key), unit)


def _lock(tx: Tx, resource_id: str, thread_key: str) -> WorkingMemory:
    params = {"resource_id": resource_id, "thread_id": thread_key, "now": time.time()}
    tx.execute("ensure_working", params)
    return _from_row(tx.fetch_one("lock_working", params))


def _write(tx: Tx, resource_id: str, thread_key: str, text: str, version: int) -> WorkingMemory:
    row = tx.fetch_one(
        "write_working",
        {
            "resource_id": resource_id,
            "thread_id": thread_key,
            "document": text,
            "version": version,
            "now": time.time(),
        },
    )
    if row is None:  # pragma: no cover - we hold the row lock; a miss means a broken invariant
        raise RuntimeError(f"working memory of {resource_id!r} changed while locked")
    return WorkingMemory(json.loads(text), int(row["version"]), float(row["updated_at"]))


def _from_row(row: dict[str, Any] | None) -> WorkingMemory:
    if row is None:
        return WorkingMemory({}, 0, None)
    updated = float(row["updated_at"]) if int(row["version"]) else None
    return WorkingMemory(json.loads(row["document"]), int(row["version"]), updated)
