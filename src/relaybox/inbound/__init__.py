"""Inbound messages and correlation (spec C4): record each platform message once, give it a
correlation id that everything it causes carries, answer it in the same transaction as it is
marked handled, and find the ones that never got a reply."""

from __future__ import annotations

from relaybox.inbound.models import InboundMessage, InboundResult, InboundState
from relaybox.inbound.query import find_gaps, get_inbound, list_inbound
from relaybox.inbound.record import (
    InboundRequest,
    RecordInbound,
    ReplyToInbound,
    build_inbound,
    enqueue_reply,
    mark_no_reply_needed,
)

__all__ = [
    "InboundMessage",
    "InboundRequest",
    "InboundResult",
    "InboundState",
    "RecordInbound",
    "ReplyToInbound",
    "build_inbound",
    "enqueue_reply",
    "find_gaps",
    "get_inbound",
    "list_inbound",
    "mark_no_reply_needed",
]
