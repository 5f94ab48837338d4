"""Put replies in a store the way an agent does: relaybox's own enqueue unit, in bulk."""

from __future__ import annotations

import uuid

from relaybox.config import parse_config
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Store

PARTS = ("Found 3 flights to Lisbon.", "Cheapest: 212 EUR.", "Leaves 09:40.", "Book it?")


def bench_channel(name: str = "bench"):  # type: ignore[no-untyped-def]
    return parse_config({"channels": {name: {"transport": "noop", "max_age_seconds": 0}}}).channels[
        name
    ]


def requests(count: int, threads: int, *, parts: int = 4, tag: str | None = None) -> list:  # type: ignore[type-arg]
    """``count`` replies of ``parts`` parts spread over ``threads`` conversation threads."""
    channel = bench_channel()
    tag = tag or uuid.uuid4().hex[:8]
    return [
        build_request(
            channel,
            thread_id=f"t{tag}-{i % threads}",
            recipient=f"+1555{i % threads:07d}",
            parts=PARTS[:parts],
            reply_key=f"{tag}-{i}",
        )
        for i in range(count)
    ]


def enqueue_bulk(store: Store, reqs: list, *, chunk: int = 1000) -> None:  # type: ignore[type-arg]
    """Enqueue in large transactions (seeding, not the enqueue measurement)."""
    for start in range(0, len(reqs), chunk):
        units = [EnqueueUnit(r) for r in reqs[start : start + chunk]]
        store.run_sync(lambda tx, units=units: [u(tx) for u in units])
