"""Memory spread over several stores, each person always on the same one.

The shard of a person is chosen by rendezvous hashing: for every shard name, SHA-256 of
``name + NUL + resource_id``; the highest wins. Every process computes the same answer (never
Python's ``hash()``, which is salted per process), the order the shards are listed in does not
matter, and adding a shard moves only the people who now land on it (about 1/N of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from relaybox.config import MemoryConfig
from relaybox.errors import ConfigError
from relaybox.memory.admin import MemoryAdmin
from relaybox.memory.scope import Scope, check_resource_id, require_scope
from relaybox.memory.scoped import ScopedMemory
from relaybox.store import Store


def shard_for(resource_id: str, shard_names: list[str] | tuple[str, ...]) -> str:
    """The name of the shard that holds ``resource_id``."""
    resource_id = check_resource_id(resource_id)
    if not shard_names:
        raise ConfigError("memory sharding needs at least one shard")
    return max(shard_names, key=lambda name: _weight(name, resource_id))


def _weight(shard: str, resource_id: str) -> bytes:
    return hashlib.sha256(f"{shard}\x00{resource_id}".encode()).digest()


class MemoryRouter:
    """Routes every memory operation of a person to that person's shard.

    >>> router = MemoryRouter({"m1": open_store(url1), "m2": open_store(url2)})  # doctest: +SKIP
    >>> mem = router.memory(Scope("+15550100", "chat-42"))                    # doctest: +SKIP
    """

    def __init__(self, shards: Mapping[str, Store], limits: MemoryConfig | None = None) -> None:
        if not shards:
            raise ConfigError("memory sharding needs at least one shard")
        for name in shards:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"shard names must be non-empty strings (got {name!r})")
        self._shards = dict(shards)
        self._names = tuple(sorted(self._shards))
        self._limits = limits or MemoryConfig()

    @property
    def shard_names(self) -> tuple[str, ...]:
        return self._names

    def shard_name(self, resource_id: str) -> str:
        return shard_for(resource_id, self._names)

    def store_for(self, resource_id: str) -> Store:
        return self._shards[self.shard_name(resource_id)]

    def memory(self, scope: Scope) -> ScopedMemory:
        scope = require_scope(scope)
        return ScopedMemory(self.store_for(scope.resource_id), scope, self._limits)

    def admin_for(self, resource_id: str) -> MemoryAdmin:
        """The admin view of the shard holding ``resource_id``."""
        return MemoryAdmin(self.store_for(resource_id))
