"""Expirer: queued replies past their channel's max age become ``expired``, never sent late."""

from __future__ import annotations

import asyncio
import logging

from relaybox.audit.deliveries import record_expired
from relaybox.audit.recorder import FailureAuditor
from relaybox.errors import StoreUnavailable
from relaybox.outbox import transitions as tr
from relaybox.store import Store

log = logging.getLogger("relaybox.worker")


async def expirer_loop(
    store: Store, interval: float, stop: asyncio.Event, audit: FailureAuditor | None = None
) -> None:
    while not stop.is_set():
        try:
            expired = await store.run(tr.expire_stale())
        except StoreUnavailable as error:
            log.warning("expiring stale replies failed (store unavailable): %s", error)
        else:
            for row in expired:
                log.info("delivery %s expired before it could be sent", row["id"])
            if audit is not None and expired:
                await record_expired(audit, [int(row["id"]) for row in expired])
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            continue
