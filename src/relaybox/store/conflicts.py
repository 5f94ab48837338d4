"""Retry a unit of work that lost a PostgreSQL lock race (deadlock or serialization failure).

Group commit runs many units in one transaction, so a batch can hold row locks of several
units while another process's batch holds them in another order. PostgreSQL then aborts one
unit with a deadlock error (SQLSTATE 40P01); only that unit's savepoint is rolled back and it
is safe to run it again. SQLite serialises writers with ``BEGIN IMMEDIATE`` and never does this.
"""

from __future__ import annotations

import asyncio
import logging
import random

from relaybox.store.base import Store, T, Unit

log = logging.getLogger("relaybox.store")

_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
MAX_TRIES = 8


def is_lock_conflict(error: BaseException) -> bool:
    """True for a deadlock or serialization failure, also when the store wrapped it (as
    :class:`~relaybox.errors.StoreUnavailable`, with the driver's error as its cause)."""
    seen: BaseException | None = error
    for _ in range(4):  # a short cause chain; never loop on a cyclic one
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        seen = seen.__cause__
    return False


async def run_retrying(store: Store, unit: Unit[T], *, tries: int = MAX_TRIES) -> T:
    """``await store.run(unit)``, run again (after a short random pause) on a lock conflict."""
    for attempt in range(1, tries + 1):
        try:
            return await store.run(unit)
        except Exception as error:
            if not is_lock_conflict(error) or attempt == tries:
                raise
            log.info("lock conflict (attempt %d), running the unit again: %s", attempt, error)
            await asyncio.sleep(random.uniform(0.0, 0.01 * attempt))
    raise AssertionError("unreachable")  # pragma: no cover
