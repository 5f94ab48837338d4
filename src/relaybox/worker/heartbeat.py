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
        await renew_once(store, list(held()), lease_seconds, on_lost, still_held=held)

    return Service("heartbeat", body, every=lease_seconds / 3.0, run_first=False, clock=clock)


async def renew_once(
    store: Store,
    holding: list[HeldDelivery],
    lease_seconds: float,
    on_lost: Callable[[Delivery], None] | None = None,
    still_held: Callable[[], Iterable[HeldDelivery]] | None = None,
) -> None:
    """Renew every lease in ``holding``; flag the ones found gone.

    A delivery that finished while the renewal was on its way (its last part recorded, so no
    longer ``sending``) is not renewed either; with ``still_held`` (the worker's live view),
    only deliveries the worker still holds afterwards count as lost, so a busy worker does not
    report a false ``lease_lost`` for each delivery it completed meanwhile.
    """
    if not holding:
        return
    kept = await store.run(tr.renew([h.lease for h in holding], lease_seconds))
    live = None if still_held is None else {id(h) for h in still_held()}
    for h in holding:
        if live is not None and id(h) not in live:
            continue  # done with it meanwhile: nothing to stop
        if h.lease.delivery_id not in kept and not h.lost:
            h.lost = True
            if on_lost is not None:  # the worker's observer: one lease_lost line and count
                on_lost(h.delivery)
            else:
                log.info("lease on delivery %s lost", h.lease.delivery_id)
