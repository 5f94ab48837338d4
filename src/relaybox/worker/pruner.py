"""Pruner: every ``[retention] interval_seconds``, delete history older than its retention age.

Runs in each worker (several workers pruning at once only find less to delete). The work is
in :mod:`relaybox.retention`; this is one pass of a supervised service (``worker/service.py``),
which never stops the worker. Step
outcomes carry their own expiry (``[steps] retention_seconds``); the loop forgets expired ones
too, in batches.
"""

from __future__ import annotations

import asyncio
import logging

from relaybox import retention
from relaybox.clock import SYSTEM, Clock
from relaybox.config import RetentionConfig
from relaybox.steps import transitions as step_transitions
from relaybox.store import Store
from relaybox.worker.service import Service

log = logging.getLogger("relaybox.worker")

PAUSE_BETWEEN_BATCHES = 0.01  # let other writers in between two delete transactions


def pruner_service(
    store: Store, config: RetentionConfig, stop: asyncio.Event, clock: Clock = SYSTEM
) -> Service | None:
    """The pruner as a service, or None when retention is disabled."""
    if not config.enabled:
        return None

    async def body() -> None:
        await prune_once(store, config, stop)

    return Service("pruner", body, every=config.interval_seconds, clock=clock)


async def prune_once(store: Store, config: RetentionConfig, stop: asyncio.Event) -> int:
    """One pass over every table; returns the rows deleted. Errors are logged, not raised."""
    total = 0
    for plan in retention.plan(config):
        try:
            result = await retention.prune(
                store, plan, config.batch_size, stop, PAUSE_BETWEEN_BATCHES
            )
        except Exception as error:  # noqa: BLE001 - pruning must never stop the worker
            log.warning(
                "pruning %s failed, next try in %gs: %s",
                plan.target.name,
                config.interval_seconds,
                error,
            )
            continue
        total += result.deleted
        if result.deleted:
            log.info(
                "pruned %d %s older than %g days in %d batches",
                result.deleted,
                plan.target.name,
                plan.age_days,
                result.batches,
            )
    return total + await prune_expired_steps(store, config, stop)


async def prune_expired_steps(store: Store, config: RetentionConfig, stop: asyncio.Event) -> int:
    """Forget step outcomes past their own expiry, a batch per transaction."""
    total = 0
    while not stop.is_set():
        try:
            deleted = await store.run(step_transitions.prune_expired(config.batch_size))
        except Exception as error:  # noqa: BLE001 - pruning must never stop the worker
            log.warning("pruning expired step outcomes failed: %s", error)
            break
        total += deleted
        if deleted < config.batch_size:
            break
        await asyncio.sleep(PAUSE_BETWEEN_BATCHES)
    if total:
        log.info("forgot %d expired step outcomes", total)
    return total
