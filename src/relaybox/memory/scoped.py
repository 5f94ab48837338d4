"""One person's memory in one conversation: the only way agent code reaches memory."""

from __future__ import annotations

from relaybox.config import MemoryConfig
from relaybox.memory.history import History, TurnFence
from relaybox.memory.notes import Notes
from relaybox.memory.scope import Scope, require_scope
from relaybox.memory.working import WorkingMemoryHandle
from relaybox.store import Store


class ScopedMemory:
    """Memory bound to a :class:`Scope`; every read and write stays inside it.

    >>> mem = rb.memory(Scope("+15550100", "chat-42"))                  # doctest: +SKIP
    >>> await mem.working.merge({"name": "Ada", "city": "Paris"})       # doctest: +SKIP
    >>> await mem.history.append("user", "Book me a table for two")     # doctest: +SKIP
    >>> await mem.notes.add("prefers window seats")                     # doctest: +SKIP

    ``working`` is the person's document, shared by all their chats; ``thread_working`` is a
    separate document for this person in this thread only. Inside a turn (``turn.memory``)
    history entries are tagged with the turn's attempt (see :mod:`relaybox.memory.history`).
    """

    def __init__(
        self,
        store: Store,
        scope: Scope,
        limits: MemoryConfig | None = None,
        *,
        turn: TurnFence | None = None,
    ) -> None:
        self.scope = require_scope(scope)
        limits = limits or MemoryConfig()
        size = limits.max_document_bytes
        self.working = WorkingMemoryHandle(store, self.scope, per_thread=False, max_bytes=size)
        self.thread_working = WorkingMemoryHandle(
            store, self.scope, per_thread=True, max_bytes=size
        )
        self.notes = Notes(store, self.scope, limits)
        self.history = History(store, self.scope, limits, turn=turn)
