"""Expirer: queued replies past their channel's max age become ``expired``, never sent late.

A supervised service (``worker/service.py``): one pass every ``expire_interval_seconds``; a pass
that fails (store unavailable) is logged by the service and retried after a backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from relaybox.audit.deliveries import expired_failure
from relaybox.audit.recorder import FailureAuditor
from relaybox.clock import SYSTEM, Clock
from relaybox.models import Delivery
from relaybox.outbox import transitions as tr
from relaybox.store import Store
from relaybox.worker.service import Service

log = logging.getLogger("relaybox.worker")


def expirer_service(
    store: Store,
    interval: float,
    audit: FailureAuditor | None = None,
    clock: Clock = SYSTEM,
    *,
    by: str = "expirer",
    on_expired: Callable[[Delivery], None] | None = None,
) -> Service:
    """``on_expired`` (the worker's observer) hears of each reply expired."""

    async def body() -> None:
        await expire_once(store, audit, clock, by=by, on_expired=on_expired)

    return Service("expirer", body, every=interval, clock=clock)


async def expire_once(
    store: Store,
    audit: FailureAuditor | None = None,
    clock: Clock = SYSTEM,
    *,
    by: str = "expirer",
    on_expired: Callable[[Delivery], None] | None = None,
) -> int:
    """One pass: expire what is past its max age; returns how many replies expired.

    The expiry, its ``expired`` events (by ``by``) and its audit rows are one transaction.
    """
    failure_of = None if audit is None else (lambda d: audit.row(expired_failure(d)))
    expired = await store.run(tr.expire_stale(clock.now(), by=by, failure_of=failure_of))
    for row in expired:
        if on_expired is not None:
            on_expired(Delivery.from_row(row))
        else:
            log.info("delivery %s expired before it could be sent", row["id"])
    return len(expired)
