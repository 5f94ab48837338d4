"""Expirer: queued replies past their channel's max age become ``expired``, never sent late.

A supervised service (``worker/service.py``): one pass every ``expire_interval_seconds``; a pass
that fails (store unavailable) is logged by the service and retried after a backoff.
"""

from __future__ import annotations

import logging

from relaybox.audit.deliveries import record_expired
from relaybox.audit.recorder import FailureAuditor
from relaybox.clock import SYSTEM, Clock
from relaybox.outbox import transitions as tr
from relaybox.store import Store
from relaybox.worker.service import Service

log = logging.getLogger("relaybox.worker")


def expirer_service(
    store: Store, interval: float, audit: FailureAuditor | None = None, clock: Clock = SYSTEM
) -> Service:
    async def body() -> None:
        await expire_once(store, audit, clock)

    return Service("expirer", body, every=interval, clock=clock)


async def expire_once(
    store: Store, audit: FailureAuditor | None = None, clock: Clock = SYSTEM
) -> int:
    """One pass: expire what is past its max age; returns how many replies expired."""
    expired = await store.run(tr.expire_stale(clock.now()))
    for row in expired:
        log.info("delivery %s expired before it could be sent", row["id"])
    if audit is not None and expired:
        await record_expired(audit, [int(row["id"]) for row in expired])
    return len(expired)
