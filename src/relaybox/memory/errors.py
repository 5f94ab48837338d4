"""Errors of scoped memory. Each bad input is refused before anything is written."""

from __future__ import annotations

from relaybox.errors import RelayboxError


class ScopedMemoryError(RelayboxError):
    """Base class of the errors scoped memory raises on purpose."""


class InvalidScope(ScopedMemoryError):
    """A memory call came without a usable scope (missing, empty or malformed ids)."""


class InvalidMemory(ScopedMemoryError):
    """A value cannot be stored as memory (not JSON, not an object, over the size limit)."""


class VersionConflict(ScopedMemoryError):
    """A compare-and-swap write found a newer version than the one it read."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
