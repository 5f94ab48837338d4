"""Heartbeat: renew the leases of every delivery this worker holds, in one write.

Runs as a supervised service (``worker/service.py``) every third of the lease. If a renewal
finds a lease gone (the worker stalled past its lease and another took over, or an operator
cancelled the delivery), the delivery is flagged ``lost`` and its runner stops before its next
send; its fenced writes would change nothing anyway. A renewal that fails (store unavailable)
raises: the service logs it and tries again after a short backoff, never later than the next
interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from relaybox.clock import SYSTEM, Clock
from relaybox.models import Delivery
from relaybox.outbox import transitions as tr
from relaybox.store import Store
from relaybox.worker.runner import HeldDelivery
from relaybox.worker.service import Service

log = logging.getLogger("relaybox.worker")


def heartbeat_service(
    store: Store,
    held: Callable[[], Iterable[HeldDelivery]],
    lease_seconds: float,
    clock: Clock = SYSTEM,
    on_lost: Callable[[Delivery], None] | None = None,
) -> Service:
    """``on_lost`` (the worker's observer) hears of every lease found gone."""

    async def body() -> None:
        await renew_once(store, list(held()), lease_seconds, on_lost)

    return Service("heartbeat", body, every=lease_seconds / 3.0, run_first=False, clock=clock)


async def renew_once(
    store: Store,
    holding: list[HeldDelivery],
    lease_seconds: float,
    on_lost: Callable[[Delivery], None] | None = None,
) -> None:
    if not holding:
        return
    kept = await store.run(tr.renew([h.lease for h in holding], lease_seconds))
    for h in holding:
        if h.lease.delivery_id not in kept and not h.lost:
            h.lost = True
            if on_lost is not None:  # the worker's observer: one lease_lost line and count
                on_lost(h.delivery)
            else:
                log.info("lease on delivery %s lost", h.lease.delivery_id)
