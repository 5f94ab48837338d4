"""Ctrl-C: the first says what the worker waits for; a second stops at once.

A real worker process whose only send hangs at a real receiver (held), so a part is on the
wire when the signals arrive. The part abandoned by the second Ctrl-C is resolved by the
ambiguity rules: the next worker resends it under the same GUID and the user sees it once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import relaybox
from _harness import WorkerProcess
from relaybox.outbox.inspect import get_delivery
from relaybox.testing.loopback import LoopbackReceiver


def events(worker: WorkerProcess) -> list[dict[str, Any]]:
    return [json.loads(x) for x in worker.output().splitlines() if x.startswith("{")]


def wait_until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_second_ctrl_c_stops_at_once(store_url: str, tmp_path: Path) -> None:
    with LoopbackReceiver(hang_seconds=60) as rx:
        config = tmp_path / "relaybox.toml"
        config.write_text(
            "[worker]\nshutdown_grace_seconds = 60\nlease_seconds = 1\n"
            f'\n[channels.sms]\ntransport = "webhook"\nurl = "{rx.url}"\n'
            "send_timeout_seconds = 60\n",
            encoding="utf-8",
        )

        async def enqueue() -> int:
            rb = relaybox.open(store_url, config=str(config))
            try:
                made = await rb.enqueue(
                    channel="sms", thread_id="t", recipient="u", parts=["one", "two"]
                )
                return made.delivery.id
            finally:
                rb.close()

        delivery_id = asyncio.run(enqueue())
        rx.hold_after(0)  # every POST hangs until released
        args = ("--log-format", "json")
        first = WorkerProcess("a", store_url, config, tmp_path / "a.log", 4, extra_args=args)
        first.start()
        try:
            first.wait_ready()
            wait_until(lambda: len(rx.wire) == 1, 20, "the first part on the wire")
            assert first.process is not None
            first.process.send_signal(signal.SIGINT)
            wait_until(
                lambda: any(e["event"] == "worker_stopping" for e in events(first)),
                20,
                "the stopping line",
            )
            (stopping,) = [e for e in events(first) if e["event"] == "worker_stopping"]
            assert stopping["in_flight"] == 1
            assert "waiting for 1 delivery(ies) in flight" in stopping["message"]
            assert "Ctrl-C again to stop at once" in stopping["message"]
            assert first.alive()  # still waiting for the held send (grace is 60 s)
            asked = time.monotonic()
            first.process.send_signal(signal.SIGINT)
            assert first.process.wait(timeout=20) == 0
            assert time.monotonic() - asked < 15, "a second Ctrl-C must not wait for the grace"
        finally:
            if first.alive():
                first.kill()
        names = [e["event"] for e in events(first)]
        assert "worker_stopping_now" in names and names[-1] == "worker_stopped"
        (released,) = [e for e in events(first) if e["event"] == "released"]
        assert released["delivery_id"] == delivery_id and "part_index" not in released

        rb = relaybox.open(store_url, config=str(config))
        try:
            assert str(rb.store.read_sync(get_delivery(delivery_id)).status) == "queued"
        finally:
            rb.close()
        rx.release()
        second = WorkerProcess("b", store_url, config, tmp_path / "b.log", 4).start()
        try:
            assert rx.wait_until_seen(2, timeout=30), rx.texts()
            assert rx.texts("t") == ["one", "two"]  # the abandoned part shown once
            assert second.stop() == 0
        finally:
            if second.alive():
                second.kill()
