"""Reading inbound messages: one, a filtered list, and the gaps (silent loss)."""

from __future__ import annotations

import time

from relaybox.errors import NotFound
from relaybox.inbound.models import InboundMessage, InboundState
from relaybox.store import Tx
from relaybox.store.base import Unit


def get_inbound(inbound_id: int) -> Unit[InboundMessage]:
    def unit(tx: Tx) -> InboundMessage:
        row = tx.fetch_one("inbound_status_by_id", {"id": inbound_id})
        if row is None:
            raise NotFound(f"inbound message {inbound_id} does not exist")
        return InboundMessage.from_row(row)

    return unit


def list_inbound(
    *,
    since: float | None = None,
    channel: str | None = None,
    thread_id: str | None = None,
    resource_id: str | None = None,
    state: InboundState | None = None,
    limit: int = 100,
) -> Unit[list[InboundMessage]]:
    """Inbound messages, newest first, with what became of each."""

    def unit(tx: Tx) -> list[InboundMessage]:
        params = {
            "since": since,
            "channel": channel,
            "thread_id": thread_id,
            "resource_id": resource_id,
            "state": None if state is None else str(state),
            "limit": limit,
        }
        return [InboundMessage.from_row(r) for r in tx.fetch_all("list_inbound", params)]

    return unit


def find_gaps(
    older_than_seconds: float,
    *,
    since: float | None = None,
    limit: int = 1000,
    now: float | None = None,
) -> Unit[list[InboundMessage]]:
    """Inbound messages older than ``older_than_seconds`` that got no delivered reply and
    were not marked "no reply needed": silent loss, oldest first."""

    def unit(tx: Tx) -> list[InboundMessage]:
        before = (time.time() if now is None else now) - older_than_seconds
        rows = tx.fetch_all("inbound_gaps", {"before": before, "since": since, "limit": limit})
        return [InboundMessage.from_row(r) for r in rows]

    return unit
