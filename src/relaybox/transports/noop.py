"""No-op transport: every part surfaces at once and goes nowhere.

A legitimate "discard" channel (a muted bot, a dry run of a migration), and the transport the
benchmark suite uses to measure relaybox itself rather than a network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaybox.models import Outcome
from relaybox.transports.registry import TransportKind

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig
from relaybox.transports.base import OutgoingPart, SendResult


class NoopTransport:
    """Answers ``surfaced`` for every part without sending anything."""

    @property
    def dedups_by_guid(self) -> bool:
        # Nothing is ever shown twice, because nothing is ever shown: a resend is harmless.
        return True

    async def send(self, part: OutgoingPart) -> SendResult:
        return SendResult(Outcome.SURFACED, message_id=None)

    async def reconcile(self, part: OutgoingPart) -> SendResult:
        return SendResult(Outcome.SURFACED, message_id=None)

    async def aclose(self) -> None:
        return None


def _build(channel: ChannelConfig) -> NoopTransport:
    return NoopTransport()


TRANSPORT = TransportKind(
    name="noop",
    build=_build,
    summary="every part surfaces at once and goes nowhere (benchmarks, muted bots)",
)
