"""Pacing: per-channel and per-thread send rates, and pauses after a rate-limit answer.

Waiting here never burns an attempt: the delivery keeps its lease (renewed by the heartbeat)
and simply sends later.
"""

from __future__ import annotations

import asyncio
import time

from relaybox.config import ChannelConfig

_MAX_TRACKED_THREADS = 10_000


class Pacer:
    def __init__(self, channels: dict[str, ChannelConfig]) -> None:
        self._channels = channels
        self._next_channel_slot: dict[str, float] = {}
        self._next_thread_slot: dict[tuple[str, str], float] = {}
        self._paused_until: dict[str, float] = {}

    def pause(self, channel: str, seconds: float) -> None:
        """Hold every send on ``channel`` for ``seconds`` (a 429/503 with retry-after)."""
        until = time.monotonic() + seconds
        self._paused_until[channel] = max(self._paused_until.get(channel, 0.0), until)

    def paused_for(self, channel: str) -> float:
        return max(0.0, self._paused_until.get(channel, 0.0) - time.monotonic())

    async def wait_turn(self, channel: str, thread_id: str) -> None:
        """Sleep until this channel and thread may send their next part, and book that slot."""
        config = self._channels.get(channel)
        now = time.monotonic()
        slot = max(now, self._paused_until.get(channel, 0.0))
        if config is not None and config.parts_per_second:
            slot = max(slot, self._next_channel_slot.get(channel, 0.0))
            self._next_channel_slot[channel] = slot + 1.0 / config.parts_per_second
        if config is not None and config.thread_parts_per_second:
            key = (channel, thread_id)
            slot = max(slot, self._next_thread_slot.get(key, 0.0))
            self._next_thread_slot[key] = slot + 1.0 / config.thread_parts_per_second
            if len(self._next_thread_slot) > _MAX_TRACKED_THREADS:
                self._forget_idle_threads(now)
        if slot > now:
            await asyncio.sleep(slot - now)

    def _forget_idle_threads(self, now: float) -> None:
        for key in [k for k, t in self._next_thread_slot.items() if t < now]:
            del self._next_thread_slot[key]
