"""New conversations per day per sending line (spec C1).

Messaging platforms police cold outreach: a phone number or bot that starts too many new
conversations in a day gets filtered or blocked. A channel with ``new_conversations_per_day``
set admits a delivery into a thread it has never written to (and that never wrote to it) only
while the UTC day's count is below the limit; otherwise the delivery waits for the next day
without burning an attempt. Replies into known threads are never counted or held.

The count is one row per channel and day, incremented by a guarded ``UPDATE ... WHERE started <
limit``, so concurrent workers on one store never exceed the limit together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from relaybox.store import Tx
from relaybox.store.base import Unit

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class AdmitConversation:
    """Unit: may ``channel`` write into ``thread_id`` now? ``None`` if yes (and booked), else
    the seconds to wait (until the next UTC day)."""

    channel: str
    thread_id: str
    limit: int
    now: float = field(default_factory=time.time)

    def __call__(self, tx: Tx) -> float | None:
        where = {"channel": self.channel, "thread_id": self.thread_id}
        if tx.fetch_one("conversation_known", where) is not None:
            return None
        day = int(self.now // DAY_SECONDS)
        tx.execute("open_daily_starts", {"channel": self.channel, "day": day})
        taken = tx.fetch_one(
            "take_daily_start", {"channel": self.channel, "day": day, "limit": self.limit}
        )
        if taken is None:
            return (day + 1) * DAY_SECONDS - self.now
        tx.execute("remember_conversation", {**where, "now": self.now})
        return None


def daily_starts(channel: str, days: int = 7) -> Unit[list[tuple[int, int]]]:
    """Read unit: ``[(day, started), ...]`` for the last ``days`` days with any start."""

    def unit(tx: Tx) -> list[tuple[int, int]]:
        rows = tx.fetch_all("daily_starts", {"channel": channel, "days": days})
        return [(int(r["day"]), int(r["started"])) for r in rows]

    return unit
