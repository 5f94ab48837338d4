"""A receiver outage (5xx, then connection refused) is waited out; only stale replies expire.

The real thing takes 30 minutes with the default settings (docs/delivery.md, "Outages"); here
the same behaviour runs with short settings: a budget of 2 attempts, backoff capped at 0.2 s,
and an outage long enough for dozens of failed sends per reply. A real worker process, a real
HTTP receiver on loopback, both stores.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import relaybox
from _harness import WorkerProcess
from relaybox.outbox.inspect import attempts_of, get_delivery
from relaybox.testing.loopback import LoopbackReceiver


def write_outage_config(path: Path, url: str) -> Path:
    common = (
        'transport = "webhook"\n'
        f'url = "{url}"\n'
        "max_attempts = 2\n"
        "backoff_base_seconds = 0.05\n"
        "backoff_max_seconds = 0.2\n"
        "jitter = 0\n"
        "send_timeout_seconds = 5\n"
    )
    path.write_text(
        "[worker]\nlease_seconds = 2\nshutdown_grace_seconds = 2\nexpire_interval_seconds = 0.1\n"
        f"\n[channels.sms]\n{common}max_age_seconds = 600\n"
        f"\n[channels.short]\n{common}max_age_seconds = 1.5\n",
        encoding="utf-8",
    )
    return path


def wait_until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_outage_is_survived_in_order_and_only_stale_replies_expire(
    store_url: str, tmp_path: Path
) -> None:
    down = {"on": True}
    first = LoopbackReceiver(
        behaviour=lambda _b: (500, {}, b"upstream broken") if down["on"] else None
    ).start()
    port = first.port
    config = write_outage_config(tmp_path / "relaybox.toml", first.url)
    plan = {"a": ["a1", "a2", "a3", "a4"], "b": ["b1", "b2"]}

    async def enqueue() -> dict[str, int]:
        rb = relaybox.open(store_url, config=str(config))
        try:
            ids = {}
            for key, parts in (("a-1", ["a1", "a2"]), ("b-1", ["b1", "b2"]), ("a-2", ["a3", "a4"])):
                r = await rb.enqueue(
                    channel="sms", thread_id=key[0], recipient="u", parts=parts, reply_key=key
                )
                ids[key] = r.delivery.id
            r = await rb.enqueue(
                channel="short", thread_id="s", recipient="u", parts=["stale"], reply_key="s"
            )
            ids["short"] = r.delivery.id
            return ids
        finally:
            rb.close()

    ids = asyncio.run(enqueue())
    worker = WorkerProcess(
        "outage", store_url, config, tmp_path / "worker.log", 8, extra_args=("--log-format", "json")
    ).start()
    second: LoopbackReceiver | None = None
    rb = relaybox.open(store_url, config=str(config))
    try:
        worker.wait_ready()
        # Phase 1: every send answered 500, far more often than the attempt budget allows.
        wait_until(lambda: len(first.wire) >= 12, 30, "a dozen 500 answers")
        # Phase 2: nothing listens at all (connection refused).
        first.stop()
        refused_before = _count_outcome(rb, ids["a-1"], "could not connect")
        wait_until(
            lambda: _count_outcome(rb, ids["a-1"], "could not connect") >= refused_before + 3,
            30,
            "refused connections",
        )
        # Only the reply older than its max age expires, during the outage.
        wait_until(lambda: _status(rb, ids["short"]) == "expired", 30, "the stale reply expiring")
        # The receiver comes back: every queued reply arrives, in order per thread.
        second = LoopbackReceiver(port=port).start()
        assert second.wait_until_seen(6, timeout=30), second.texts()
        assert second.texts("a") == plan["a"]
        assert second.texts("b") == plan["b"]
        wait_until(
            lambda: all(_status(rb, ids[k]) == "delivered" for k in ("a-1", "b-1", "a-2")),
            30,
            "every reply recorded as delivered",
        )
        outages = _count_outcome(rb, ids["a-1"], "")
        assert outages > 2 * 3, "the outage took many more sends than max_attempts"
        assert "stale" not in second.texts()
        assert worker.stop() == 0
    finally:
        if worker.alive():
            worker.kill()
        rb.close()
        first.stop()
        if second is not None:
            second.stop()
    events = [json.loads(x) for x in worker.output().splitlines() if x.startswith("{")]
    retries = [e for e in events if e.get("event") == "retry_scheduled"]
    assert retries and all(e["burned"] is False for e in retries)
    assert not [e for e in events if e.get("event") == "gave_up"]
    assert [e for e in events if e.get("event") == "expired" and e["channel"] == "short"]


def _status(rb: relaybox.Relaybox, delivery_id: int) -> str:
    return str(rb.store.read_sync(get_delivery(delivery_id)).status)


def _count_outcome(rb: relaybox.Relaybox, delivery_id: int, error_contains: str) -> int:
    attempts = rb.store.read_sync(attempts_of(delivery_id))
    return sum(
        1 for a in attempts if a.outcome == "receiver_down" and error_contains in (a.error or "")
    )
