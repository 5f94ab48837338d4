"""Console transport: prints each part as a chat bubble. For demos and trying things out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from relaybox.models import Outcome
from relaybox.transports.registry import TransportKind

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig
from relaybox.transports.base import NotSent, OutgoingPart, SendResult


class ConsoleTransport:
    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()

    @property
    def dedups_by_guid(self) -> bool:
        # A terminal cannot take a line back, so an ambiguous send must not be repeated blindly.
        return False

    async def send(self, part: OutgoingPart) -> SendResult:
        self._console.print(
            f"[bold cyan]{part.recipient}[/] [dim]{part.thread_id} "
            f"{part.index + 1}/{part.count} {part.guid[:8]}[/]  {escape(part.text)}",
            highlight=False,
            markup=True,
        )
        return SendResult(Outcome.SURFACED, message_id=None)

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        return None  # cannot tell what reached the screen

    async def aclose(self) -> None:
        return None


def _build(channel: ChannelConfig) -> ConsoleTransport:
    return ConsoleTransport()


TRANSPORT = TransportKind(
    name="console", build=_build, summary="prints each part as a chat bubble (demos)"
)
