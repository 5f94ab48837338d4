"""Read units for turns: one, a filtered list, the journal, and what a resume pass may take."""

from __future__ import annotations

import time
from collections.abc import Sequence

from relaybox.errors import NotFound
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.turns.records import TurnEvent, TurnRecord, TurnStatus


def get_turn(turn_id: int) -> Unit[TurnRecord]:
    def unit(tx: Tx) -> TurnRecord:
        row = tx.fetch_one("turn_by_id", {"id": turn_id})
        if row is None:
            raise NotFound(f"turn {turn_id} does not exist")
        return TurnRecord.from_row(row)

    return unit


def turn_of_inbound(inbound_id: int) -> Unit[TurnRecord | None]:
    def unit(tx: Tx) -> TurnRecord | None:
        row = tx.fetch_one("turn_by_inbound", {"inbound_id": inbound_id})
        return None if row is None else TurnRecord.from_row(row)

    return unit


def turns_of_inbound(inbound_ids: Sequence[int]) -> Unit[dict[int, TurnRecord]]:
    """The turn of each of these inbound messages that has one (what ``relaybox gaps``
    shows beside a message: failed, blocked, pending ..., and how many attempts ran)."""

    def unit(tx: Tx) -> dict[int, TurnRecord]:
        found: dict[int, TurnRecord] = {}
        for inbound_id in inbound_ids:
            row = tx.fetch_one("turn_by_inbound", {"inbound_id": inbound_id})
            if row is not None:
                found[inbound_id] = TurnRecord.from_row(row)
        return found

    return unit


def list_turns(
    *, status: TurnStatus | None = None, resource_id: str | None = None, limit: int = 100
) -> Unit[list[TurnRecord]]:
    """Turns, newest first."""

    def unit(tx: Tx) -> list[TurnRecord]:
        params = {
            "status": None if status is None else str(status),
            "resource_id": resource_id,
            "limit": limit,
        }
        return [TurnRecord.from_row(r) for r in tx.fetch_all("list_turns", params)]

    return unit


def events_of_turn(turn_id: int) -> Unit[list[TurnEvent]]:
    def unit(tx: Tx) -> list[TurnEvent]:
        rows = tx.fetch_all("turn_events_of", {"turn_id": turn_id})
        return [TurnEvent.from_row(r) for r in rows]

    return unit


def turn_events_for_correlation(correlation_id: str) -> Unit[list[TurnEvent]]:
    def unit(tx: Tx) -> list[TurnEvent]:
        rows = tx.fetch_all("turn_events_for_correlation", {"correlation_id": correlation_id})
        return [TurnEvent.from_row(r) for r in rows]

    return unit


def resumable_turns(
    resume_after_seconds: float, *, limit: int = 100, now: float | None = None
) -> Unit[list[TurnRecord]]:
    """Turns a resume pass may take now: crashed more than ``resume_after_seconds`` past
    their lease, pending and due, or blocked on a step that has since been resolved."""

    def unit(tx: Tx) -> list[TurnRecord]:
        at = time.time() if now is None else now
        params = {"now": at, "crashed_before": at - resume_after_seconds, "limit": limit}
        return [TurnRecord.from_row(r) for r in tx.fetch_all("resumable_turns", params)]

    return unit
