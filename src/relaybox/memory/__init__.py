"""Per-user scoped memory (spec C7): working memory, observational notes, conversation history.

Every operation takes a :class:`Scope` (person + thread). See docs/memory.md.
"""

from relaybox.memory.admin import MemoryAdmin, ResourceMemory, ResourceSummary, ThreadSummary
from relaybox.memory.errors import InvalidMemory, InvalidScope, ScopedMemoryError, VersionConflict
from relaybox.memory.history import History, Message, TurnFence
from relaybox.memory.notes import Note, Notes
from relaybox.memory.scope import Scope
from relaybox.memory.scoped import ScopedMemory
from relaybox.memory.sharding import MemoryRouter, shard_for
from relaybox.memory.working import WorkingMemory, WorkingMemoryHandle

__all__ = [
    "History",
    "InvalidMemory",
    "InvalidScope",
    "MemoryAdmin",
    "MemoryRouter",
    "Message",
    "Note",
    "Notes",
    "ResourceMemory",
    "ResourceSummary",
    "Scope",
    "ScopedMemory",
    "ScopedMemoryError",
    "ThreadSummary",
    "TurnFence",
    "VersionConflict",
    "WorkingMemory",
    "WorkingMemoryHandle",
    "shard_for",
]
