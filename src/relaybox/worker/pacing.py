"""Pacing: per-channel, per-thread and per-group send rates, and pauses after a rate-limit answer.

Waiting here never burns an attempt: the delivery keeps its lease (renewed by the heartbeat)
and simply sends later. Per-thread gaps count from each send's answer (see :meth:`Pacer.sent`),
so the platform sees them even when a request arrives late; per-channel rates book start times
(sends run concurrently). The rates come from the channel's config, where a platform transport's
preset fills in the platform's documented limits (``parts_per_second`` per bot or sending
line, ``thread_parts_per_second`` per chat, ``group_parts_per_minute`` per group chat, told
apart by the transport kind's ``is_group``). Pacing is per worker process: with N workers on
one channel, divide the rates by N (docs/platforms.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from relaybox.config import ChannelConfig

_MAX_TRACKED_THREADS = 10_000


class Pacer:
    def __init__(self, channels: dict[str, ChannelConfig]) -> None:
        from relaybox.transports.registry import get_kind

        self._channels = channels
        self._is_group: dict[str, Callable[[str], bool]] = {}
        self._cost: dict[str, Callable[[str], float]] = {}
        for name, config in channels.items():
            kind = get_kind(config.transport)
            if config.group_parts_per_minute and kind.is_group is not None:
                self._is_group[name] = kind.is_group
            if kind.cost is not None:
                self._cost[name] = kind.cost
        self._next_channel_slot: dict[str, float] = {}
        self._next_thread_slot: dict[tuple[str, str], float] = {}
        self._paused_until: dict[str, float] = {}

    def pause(self, channel: str, seconds: float) -> None:
        """Hold every send on ``channel`` for ``seconds`` (a 429/503 with retry-after)."""
        until = time.monotonic() + seconds
        self._paused_until[channel] = max(self._paused_until.get(channel, 0.0), until)

    def paused_for(self, channel: str) -> float:
        return max(0.0, self._paused_until.get(channel, 0.0) - time.monotonic())

    async def wait_turn(
        self, channel: str, thread_id: str, recipient: str = "", text: str = ""
    ) -> None:
        """Sleep until this channel and thread may send their next part, and book that slot."""
        config = self._channels.get(channel)
        now = time.monotonic()
        slot = max(now, self._paused_until.get(channel, 0.0))
        if config is not None and config.parts_per_second:
            slot = max(slot, self._next_channel_slot.get(channel, 0.0))
            cost = self._cost[channel](text) if channel in self._cost else 1.0
            self._next_channel_slot[channel] = slot + cost / config.parts_per_second
        thread_interval = self._thread_interval(channel, recipient)
        if thread_interval:
            key = (channel, thread_id)
            slot = max(slot, self._next_thread_slot.get(key, 0.0))
            self._next_thread_slot[key] = slot + thread_interval
            if len(self._next_thread_slot) > _MAX_TRACKED_THREADS:
                self._forget_idle_threads(now)
        if slot > now:
            await asyncio.sleep(slot - now)

    def sent(self, channel: str, thread_id: str, recipient: str = "") -> None:
        """A send in this thread finished (answered or not): its next part waits a full
        interval from now.

        The slot booked in :meth:`wait_turn` counts from when the request was made, but the
        platform counts from when it arrived; a request that arrived late (a new connection,
        a slow network) would otherwise leave a shorter gap before the next one. A thread
        sends one part at a time, so counting from the answer costs one round trip per part
        and guarantees the gap the platform sees.
        """
        interval = self._thread_interval(channel, recipient)
        if interval:
            key = (channel, thread_id)
            until = time.monotonic() + interval
            self._next_thread_slot[key] = max(self._next_thread_slot.get(key, 0.0), until)

    def _thread_interval(self, channel: str, recipient: str) -> float:
        config = self._channels.get(channel)
        if config is None:
            return 0.0
        interval = 1.0 / config.thread_parts_per_second if config.thread_parts_per_second else 0.0
        is_group = self._is_group.get(channel)
        if config.group_parts_per_minute and is_group is not None and is_group(recipient):
            interval = max(interval, 60.0 / config.group_parts_per_minute)
        return interval

    def _forget_idle_threads(self, now: float) -> None:
        for key in [k for k, t in self._next_thread_slot.items() if t < now]:
            del self._next_thread_slot[key]
