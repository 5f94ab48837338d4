"""The scope every memory operation carries: whose memory, and which conversation.

``resource_id`` is the person (e.g. the sender address ``+15550100``); ``thread_id`` is the
chat (``chat-<chat id>``). Working memory and notes belong to the person; conversation
history belongs to the person *in* a thread. A scope with an empty id cannot be built, so no
memory call can run unscoped.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaybox import validation
from relaybox.memory.errors import InvalidScope

MAX_ID_CHARS = 512


@dataclass(frozen=True, slots=True)
class Scope:
    """Who and where: ``Scope(resource_id="+15550100", thread_id="chat-42")``."""

    resource_id: str
    thread_id: str

    def __post_init__(self) -> None:
        _check_id("resource_id", self.resource_id)
        _check_id("thread_id", self.thread_id)

    @classmethod
    def for_chat(cls, sender: str, chat_id: str | int) -> Scope:
        """The usual convention: the person is the sender, the thread is ``chat-<chat id>``."""
        return cls(resource_id=sender, thread_id=f"chat-{chat_id}")


def require_scope(scope: object) -> Scope:
    """Refuse anything that is not a :class:`Scope` (a bare string, None, a dict...)."""
    if not isinstance(scope, Scope):
        raise InvalidScope(
            f"memory needs a Scope(resource_id, thread_id), got {type(scope).__name__}"
        )
    return scope


def check_resource_id(value: object) -> str:
    """Validate a bare resource id (admin and sharding calls that take no thread)."""
    _check_id("resource_id", value)
    assert isinstance(value, str)
    return value


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidScope(f"scope {name} must be a string, not {type(value).__name__}")
    validation.identifier(f"scope {name}", value, error=InvalidScope, max_chars=MAX_ID_CHARS)
