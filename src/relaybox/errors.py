"""Errors relaybox raises to its callers.

Every error a user can cause carries a one-line message that says what was wrong and
what to do; the CLI prints ``str(error)`` as is.
"""

from __future__ import annotations


class RelayboxError(Exception):
    """Base class of every error relaybox raises on purpose."""


class ConfigError(RelayboxError):
    """relaybox.toml (or an option) is malformed or holds an invalid value."""


class InvalidReply(RelayboxError):
    """A reply cannot be enqueued as given (empty, oversized, not UTF-8, ...)."""


class UnknownChannel(RelayboxError):
    """A reply names a channel that is not configured."""


class ReplyKeyConflict(RelayboxError):
    """The same reply key was enqueued before with different content."""


class StoreUnavailable(RelayboxError):
    """The store URL cannot be opened or the store stopped answering."""


class StoreConnectionLost(StoreUnavailable):
    """The connection to the store broke mid-work; the next unit of work reconnects."""


class StoreNotFound(StoreUnavailable):
    """Inspection found no database at the given location (nothing was created)."""


class NotARelayboxStore(StoreUnavailable):
    """The database exists but holds no relaybox schema (it was left untouched)."""


class SchemaMismatch(StoreUnavailable):
    """The store's schema is older or newer than this relaybox; the message says which migration."""


class StoreReadOnly(RelayboxError):
    """A write was attempted on a store opened read-only for inspection."""


class NotFound(RelayboxError):
    """The delivery (or other record) asked for does not exist."""


class InvalidState(RelayboxError):
    """The operation does not apply to a record in its current state."""


class InvalidInbound(RelayboxError):
    """An inbound message cannot be recorded as given (empty id, oversized text, ...)."""


class TurnLeaseLost(RelayboxError):
    """This attempt no longer holds its turn (another attempt took it over): nothing it tried
    to write was stored."""


class TurnHandlerTimeout(RelayboxError):
    """A resumed turn's handler ran past ``[turns] handler_timeout_seconds`` and was
    cancelled: a failed attempt (the turn runs again, or fails at the attempt limit)."""


class InvalidTask(RelayboxError):
    """A task request is bad: a deadline of 0, a summary past the channel's limit, ..."""


class TaskFinished(InvalidState):
    """The task already ended (or is delivering its result): nothing more can be reported."""


class TaskConflict(InvalidState):
    """The task was completed with a different result, or its key names another task."""


class TaskDataError(RelayboxError):
    """A stored task row or journal event cannot be decoded: the unit stops and rolls back."""
