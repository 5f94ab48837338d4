"""In-memory transport: records exactly what the user saw. For tests and examples."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relaybox.models import Outcome
from relaybox.transports.base import NOT_SENT, NotSent, OutgoingPart, SendResult
from relaybox.transports.registry import TransportKind

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig

Script = Callable[[OutgoingPart], SendResult | BaseException | None]


@dataclass
class MemoryTransport:
    """Deduplicates by GUID like a well-behaved chat platform.

    ``script`` may return a result or an exception (raised) for a part, to simulate failures;
    returning ``None`` means "behave normally".
    """

    dedup: bool = True
    script: Script | None = None
    delay_seconds: float = 0.0
    wire: list[OutgoingPart] = field(default_factory=list)  # every request, duplicates too
    seen: list[OutgoingPart] = field(default_factory=list)  # what the user saw, in order
    _guids: set[str] = field(default_factory=set)

    @property
    def dedups_by_guid(self) -> bool:
        return self.dedup

    async def send(self, part: OutgoingPart) -> SendResult:
        self.wire.append(part)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.script is not None:
            scripted = self.script(part)
            if isinstance(scripted, BaseException):
                raise scripted
            if scripted is not None:
                if scripted.outcome is Outcome.SURFACED:
                    self._surface(part)
                return scripted
        if self.dedup and part.guid in self._guids:
            return SendResult(Outcome.DUPLICATE, message_id=f"mem-{part.guid}")
        self._surface(part)
        return SendResult(Outcome.SURFACED, message_id=f"mem-{part.guid}")

    def _surface(self, part: OutgoingPart) -> None:
        self._guids.add(part.guid)
        self.seen.append(part)

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        if part.guid in self._guids:
            return SendResult(Outcome.SURFACED, message_id=f"mem-{part.guid}")
        return NOT_SENT

    async def aclose(self) -> None:
        return None

    def texts(self, thread_id: str | None = None) -> list[str]:
        """What the user saw, optionally in one thread."""
        return [p.text for p in self.seen if thread_id is None or p.thread_id == thread_id]


@dataclass(frozen=True)
class MemoryOptions:
    """``[channels.x]`` keys of a ``transport = "memory"`` channel."""

    dedup: bool = True  # behave like a platform that drops a second copy of a GUID


def _build(channel: ChannelConfig) -> MemoryTransport:
    options: MemoryOptions = channel.options
    return MemoryTransport(dedup=options.dedup)


TRANSPORT = TransportKind(
    name="memory",
    build=_build,
    options=MemoryOptions,
    summary="in-process; records what the user saw (tests, examples)",
)
