"""Group commit: units queued together share one transaction, yet one unit's failure undoes
only its own writes (middle and last unit failing), on both stores."""

from __future__ import annotations

import threading
import time

import pytest

from _outbox_helpers import fast_config
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Tx, open_store

CHANNEL = fast_config().channel("mem")


def _enqueue(key: str) -> EnqueueUnit:
    return EnqueueUnit(
        build_request(CHANNEL, thread_id=key, recipient="r", parts=["x"], reply_key=key)
    )


def _failing(key: str):  # type: ignore[no-untyped-def]
    def unit(tx: Tx) -> None:
        _enqueue(key)(tx)  # a write that must not survive
        raise ValueError(f"unit {key} failed")

    return unit


def test_failed_units_in_a_batch_undo_only_their_own_writes(store_url: str):
    store = open_store(store_url)
    try:
        started = threading.Event()

        def slow(tx: Tx) -> None:
            started.set()
            time.sleep(0.3)  # the units below queue up meanwhile: they form one batch

        first = store.submit(slow)
        assert started.wait(5)
        futures = [
            store.submit(_enqueue("a")),
            store.submit(_failing("b")),
            store.submit(_enqueue("c")),
            store.submit(_failing("d")),
        ]
        first.result(10)
        assert futures[0].result(10).created and futures[2].result(10).created
        for failed in (futures[1], futures[3]):
            with pytest.raises(ValueError, match="failed"):
                failed.result(10)

        def keys(tx: Tx) -> list[str]:
            return sorted(r["reply_key"] for r in tx.fetch_all("list_deliveries", {
                "status": None, "thread_id": None, "channel": None, "limit": 10}))  # fmt: skip

        assert store.read_sync(keys) == ["a", "c"]
        # the connection is healthy afterwards
        assert store.run_sync(_enqueue("e")).created
    finally:
        store.close()
