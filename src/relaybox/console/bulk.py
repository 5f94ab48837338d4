"""Bulk retry and cancel of every delivery matching a filter, shared by the console and the CLI.

A bulk action is many single actions, each the same guarded transition an operator would run
by hand (``outbox/transitions.py``), applied in batches of ids read newest first. A delivery
that changed state between the preview and its batch (a worker finished it, another operator
acted) is skipped and counted, never forced. Each batch is one unit of work, so a bulk action
cut short leaves whole batches done and the rest untouched; running it again picks up what is
left, because the filter no longer matches what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from relaybox.console.filters import BadFilter, DeliveryFilter
from relaybox.console.queries import count_matching, matching_ids
from relaybox.errors import InvalidState, NotFound
from relaybox.models import Status
from relaybox.outbox import transitions
from relaybox.outbox.events import Actor
from relaybox.store import Store, Tx
from relaybox.store.base import Unit

BATCH = 200


class BulkAction(StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"


APPLIES_TO: dict[BulkAction, tuple[Status, ...]] = {
    BulkAction.RETRY: (Status.FAILED, Status.UNKNOWN, Status.EXPIRED),
    BulkAction.CANCEL: (Status.QUEUED, Status.SENDING),
}


def parse_action(value: str | None) -> BulkAction:
    try:
        return BulkAction(value or "")
    except ValueError:
        raise BadFilter(f"unknown bulk action {str(value)[:40]!r}; one of: retry, cancel") from None


def statuses_for(action: BulkAction, where: DeliveryFilter) -> tuple[Status, ...]:
    """The statuses ``action`` applies to, narrowed by the filter's own status."""
    applicable = APPLIES_TO[action]
    if where.status is None:
        return applicable
    if where.status not in applicable:
        raise BadFilter(
            f"cannot {action} {where.status} deliveries; {action} applies to"
            f" {', '.join(str(s) for s in applicable)}"
        )
    return (where.status,)


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: str
    filter: str
    matched: int  # the preview's count
    changed: int  # deliveries the action applied to
    skipped: int  # matched but changed state meanwhile
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def preview(store: Store, action: BulkAction, where: DeliveryFilter) -> int:
    """How many deliveries the action would touch now."""
    return store.read_sync(count_matching(where, statuses_for(action, where)))


def run_bulk(
    store: Store,
    action: BulkAction,
    where: DeliveryFilter,
    *,
    who: str,
    progress: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
) -> BulkResult:
    """Apply ``action`` to every matching delivery; ``progress(done, total)`` after each batch.

    Blocking (it waits for each batch's commit): call it from a thread in async code.
    """
    statuses = statuses_for(action, where)
    total = store.read_sync(count_matching(where, statuses))
    if dry_run:
        return BulkResult(str(action), where.describe(), total, 0, 0, True)
    changed = skipped = 0
    # One action: every delivery's event carries its id and how many it covered.
    actor = Actor.bulk(who, max(1, total))
    for status in statuses:
        narrowed = where.with_status(status)
        before: int | None = None
        while True:
            ids = store.read_sync(matching_ids(narrowed, before, BATCH))
            if not ids:
                break
            before = ids[-1]
            done = store.run_sync(_apply_batch(action, ids, actor))
            changed += done
            skipped += len(ids) - done
            if progress is not None:
                progress(changed + skipped, max(total, changed + skipped))
    return BulkResult(str(action), where.describe(), total, changed, skipped, False)


def _apply_batch(action: BulkAction, ids: list[int], actor: Actor) -> Unit[int]:
    def unit(tx: Tx) -> int:
        done = 0
        for delivery_id in ids:
            try:
                apply_one(action, delivery_id, actor)(tx)
            except (InvalidState, NotFound):
                continue  # it moved on since the preview: leave it be
            done += 1
        return done

    return unit


def apply_one(action: BulkAction, delivery_id: int, actor: Actor) -> Unit[Any]:
    """The single-delivery transition a bulk action is made of (recorded as its event)."""
    if action is BulkAction.RETRY:
        return transitions.retry(delivery_id, by=actor, note="bulk")
    return transitions.cancel(delivery_id, reason=f"cancelled by {actor.who} (bulk)", by=actor)
