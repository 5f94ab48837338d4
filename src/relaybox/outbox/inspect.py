"""Read-only units for the API and the CLI: deliveries, their parts and their attempts."""

from __future__ import annotations

from typing import Any

from relaybox.errors import NotFound
from relaybox.models import Attempt, Delivery, Part, Status
from relaybox.outbox.events import DeliveryEvent
from relaybox.store import Tx
from relaybox.store.base import Unit


def get_delivery(delivery_id: int) -> Unit[Delivery]:
    def unit(tx: Tx) -> Delivery:
        row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
        if row is None:
            raise NotFound(f"delivery {delivery_id} does not exist")
        rows = tx.fetch_all("parts_of_delivery", {"delivery_id": delivery_id})
        return Delivery.from_row(row, tuple(_part(p) for p in rows))

    return unit


def list_deliveries(
    *,
    status: Status | None = None,
    thread_id: str | None = None,
    channel: str | None = None,
    limit: int = 100,
) -> Unit[list[Delivery]]:
    def unit(tx: Tx) -> list[Delivery]:
        params = {
            "status": None if status is None else str(status),
            "thread_id": thread_id,
            "channel": channel,
            "limit": limit,
        }
        rows = tx.fetch_all("list_deliveries", params)
        # Every listed delivery with its parts and their outcomes, so --json shows them.
        return [
            Delivery.from_row(
                r,
                tuple(
                    _part(p)
                    for p in tx.fetch_all("parts_of_delivery", {"delivery_id": int(r["id"])})
                ),
            )
            for r in rows
        ]

    return unit


def _part(row: dict[str, Any]) -> Part:
    return Part(
        index=int(row["part_index"]),
        guid=row["guid"],
        body=row["body"],
        outcome=row["outcome"],
        transport_message_id=row["transport_message_id"],
        sent_at=None if row["sent_at"] is None else float(row["sent_at"]),
    )


def attempts_of(delivery_id: int) -> Unit[list[Attempt]]:
    def unit(tx: Tx) -> list[Attempt]:
        rows = tx.fetch_all("attempts_of_delivery", {"delivery_id": delivery_id})
        return [Attempt.from_row(r) for r in rows]

    return unit


def events_of(delivery_id: int) -> Unit[list[DeliveryEvent]]:
    """Operator actions and give-ups of one delivery, oldest first."""

    def unit(tx: Tx) -> list[DeliveryEvent]:
        rows = tx.fetch_all("events_of_delivery", {"delivery_id": delivery_id})
        return [DeliveryEvent.from_row(r) for r in rows]

    return unit
