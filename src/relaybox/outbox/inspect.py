"""Read-only units for the API and the CLI: deliveries, their parts and their attempts."""

from __future__ import annotations

from relaybox.errors import NotFound
from relaybox.models import Attempt, Delivery, Part, Status
from relaybox.store import Tx
from relaybox.store.base import Unit


def get_delivery(delivery_id: int) -> Unit[Delivery]:
    def unit(tx: Tx) -> Delivery:
        row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
        if row is None:
            raise NotFound(f"delivery {delivery_id} does not exist")
        parts = tuple(
            Part(
                index=int(p["part_index"]),
                guid=p["guid"],
                body=p["body"],
                outcome=p["outcome"],
                transport_message_id=p["transport_message_id"],
                sent_at=None if p["sent_at"] is None else float(p["sent_at"]),
            )
            for p in tx.fetch_all("parts_of_delivery", {"delivery_id": delivery_id})
        )
        return Delivery.from_row(row, parts)

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
        return [Delivery.from_row(r) for r in tx.fetch_all("list_deliveries", params)]

    return unit


def attempts_of(delivery_id: int) -> Unit[list[Attempt]]:
    def unit(tx: Tx) -> list[Attempt]:
        rows = tx.fetch_all("attempts_of_delivery", {"delivery_id": delivery_id})
        return [Attempt.from_row(r) for r in rows]

    return unit
