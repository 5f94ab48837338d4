"""Single-delivery operator actions (cancel, retry, resolve), as the console runs them.

The same guarded transitions as the CLI's ``relaybox deliveries cancel|retry|resolve``; the
console adds only who asked, and a nudge to its change feed so open pages update at once.
"""

from __future__ import annotations

from relaybox.console.app import ConsoleState
from relaybox.models import Delivery
from relaybox.outbox import transitions
from relaybox.outbox.events import Actor


async def cancel(state: ConsoleState, delivery_id: int, who: str, reason: str = "") -> Delivery:
    why = f"cancelled by {who}" + (f": {reason}" if reason else "")
    done = await state.store.run(transitions.cancel(delivery_id, why, by=_actor(who)))
    state.feed.wake()
    return done


async def retry(state: ConsoleState, delivery_id: int, who: str) -> Delivery:
    done = await state.store.run(transitions.retry(delivery_id, by=_actor(who)))
    state.feed.wake()
    return done


async def resolve(state: ConsoleState, delivery_id: int, who: str, arrived: bool) -> Delivery:
    """Settle a parked (unknown) delivery: did its ambiguous part reach the user?"""
    done = await state.store.run(transitions.resolve(delivery_id, arrived=arrived, by=_actor(who)))
    state.feed.wake()
    return done


def _actor(who: str) -> Actor:
    """Console actions are delivery events by ``who`` (``console:<user>``)."""
    return Actor(who)
