"""Single-delivery operator actions (cancel, retry, resolve), as the console runs them.

The same guarded transitions as the CLI's ``relaybox deliveries cancel|retry|resolve``; the
console adds only who asked, and a nudge to its change feed so open pages update at once.
"""

from __future__ import annotations

from relaybox.console.app import ConsoleState
from relaybox.errors import InvalidState
from relaybox.models import Delivery, Status
from relaybox.outbox import inspect, transitions


async def cancel(state: ConsoleState, delivery_id: int, who: str, reason: str = "") -> Delivery:
    why = f"cancelled by {who}" + (f": {reason}" if reason else "")
    done = await state.store.run(transitions.cancel(delivery_id, why))
    state.feed.wake()
    return done


async def retry(state: ConsoleState, delivery_id: int, who: str) -> Delivery:
    done = await state.store.run(transitions.requeue(delivery_id, reason=f"retried by {who}"))
    state.feed.wake()
    return done


async def resolve(state: ConsoleState, delivery_id: int, who: str, arrived: bool) -> Delivery:
    """Settle a parked (unknown) delivery: did its ambiguous part reach the user?"""
    current = await state.store.read(inspect.get_delivery(delivery_id))
    if current.status is not Status.UNKNOWN:
        raise InvalidState(
            f"delivery {delivery_id} is {current.status}, not unknown; nothing to resolve"
        )
    verdict = "arrived" if arrived else "did not arrive"
    done = await state.store.run(
        transitions.requeue(
            delivery_id,
            skip_parts=1 if arrived else 0,
            reason=f"resolved by {who}: ambiguous part {verdict}",
        )
    )
    state.feed.wake()
    return done
