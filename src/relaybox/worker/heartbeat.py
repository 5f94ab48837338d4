"""Heartbeat: renew the leases of every delivery this worker holds, in one write.

If a renewal finds a lease gone (the worker stalled past its lease and another took over,
or an operator cancelled the delivery), the delivery is flagged ``lost`` and its runner stops
before its next send; its fenced writes would change nothing anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from relaybox.errors import StoreUnavailable
from relaybox.outbox import transitions as tr
from relaybox.store import Store
from relaybox.worker.runner import HeldDelivery

log = logging.getLogger("relaybox.worker")


async def heartbeat_loop(
    store: Store,
    held: Callable[[], Iterable[HeldDelivery]],
    lease_seconds: float,
    stop: asyncio.Event,
) -> None:
    interval = lease_seconds / 3.0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        except TimeoutError:
            pass
        await renew_once(store, list(held()), lease_seconds)


async def renew_once(store: Store, holding: list[HeldDelivery], lease_seconds: float) -> None:
    if not holding:
        return
    try:
        kept = await store.run(tr.renew([h.lease for h in holding], lease_seconds))
    except StoreUnavailable as error:
        log.warning("lease renewal failed (store unavailable): %s", error)
        return
    for h in holding:
        if h.lease.delivery_id not in kept and not h.lost:
            log.info("lease on delivery %s lost", h.lease.delivery_id)
            h.lost = True
