"""What this worker knows about each channel right now: failing in a row? paused since when?

A listener of the worker's observer. The workers registry publishes a snapshot with every
heartbeat (``workers.channel_state``), which is how ``relaybox health`` in another process
knows that a channel has failed N sends in a row or has been paused for too long, without a
store write per part. The runner also reads :meth:`ChannelStates.failing_streak` to back off
a receiver outage for the whole channel (see ``worker/runner.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from relaybox.models import Delivery, Part
from relaybox.observability.events import Listener

# Pauses that follow each other within this slack count as one continuous pause.
_PAUSE_SLACK_SECONDS = 5.0


@dataclass
class ChannelState:
    consecutive_failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None
    last_success_at: float | None = None
    paused_until: float | None = None
    paused_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at,
            "last_success_at": self.last_success_at,
            "paused_until": self.paused_until,
            "paused_since": self.paused_since,
        }


class ChannelStates(Listener):
    """Per channel: sends failed in a row (reset by any acknowledged part), current pause."""

    def __init__(self, channels: list[str]) -> None:
        self.states: dict[str, ChannelState] = {name: ChannelState() for name in channels}

    def _of(self, channel: str) -> ChannelState:
        state = self.states.get(channel)
        if state is None:
            state = self.states[channel] = ChannelState()
        return state

    def failing_streak(self, channel: str) -> int:
        return self._of(channel).consecutive_failures

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        state = self._of(d.channel)
        state.consecutive_failures = 0
        state.last_success_at = time.time()

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        if outcome in ("rate_limited", "unavailable"):
            return  # asked to wait: a pause, not a failure
        state = self._of(d.channel)
        state.consecutive_failures += 1
        state.last_error = error[:500]
        state.last_failure_at = time.time()

    def paused(self, d: Delivery, part: Part, until: float, reason: str) -> None:
        state = self._of(d.channel)
        now = time.time()
        continuing = (
            state.paused_until is not None
            and state.paused_since is not None
            and state.paused_until + _PAUSE_SLACK_SECONDS >= now
        )
        if not continuing:
            state.paused_since = now
        state.paused_until = max(until, state.paused_until or 0.0) if continuing else until

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """JSON for the workers registry; a pause that ended is reported as none."""
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for name, state in self.states.items():
            data = state.to_json()
            if state.paused_until is None or state.paused_until + _PAUSE_SLACK_SECONDS < now:
                data["paused_until"] = None
                data["paused_since"] = None
            out[name] = data
        return out
