"""The live workers registry: register, heartbeat, deregister on a clean stop, age out on death.

Units on both stores, then real worker processes seen through ``relaybox workers --json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _harness import WorkerProcess
from relaybox.store import open_store
from relaybox.testing.loopback import LoopbackReceiver
from relaybox.workers import transitions as wt
from relaybox.workers.inspect import list_workers
from relaybox.workers.transitions import FORGET_AFTER_SECONDS, WorkerRecord


def record(worker_id: str, started: float) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        host="h1",
        pid=42,
        version="0.1.0",
        channels=("sms", "tg"),
        concurrency=8,
        started_at=started,
    )


def test_register_heartbeat_deregister_and_age_out(store_url: str) -> None:
    store = open_store(store_url)
    try:
        t = 1_000_000.0
        store.run_sync(wt.register(record("w-a", t), now=t))
        store.run_sync(wt.register(record("w-b", t + 1), now=t + 1))
        beat = WorkerRecord(
            **{**record("w-a", t).__dict__, "in_flight": 3,
               "channel_state": {"sms": {"consecutive_failures": 2}}}
        )  # fmt: skip
        store.run_sync(wt.heartbeat(beat, now=t + 20))
        rows = store.read_sync(list_workers(dead_after=30, now=t + 25))
        assert [(w.id, w.alive) for w in rows] == [("w-a", True), ("w-b", True)]
        a = rows[0]
        assert (a.host, a.pid, a.version, a.channels, a.in_flight) == (
            "h1", 42, "0.1.0", ("sms", "tg"), 3,
        )  # fmt: skip
        assert a.channel_state == {"sms": {"consecutive_failures": 2}}
        # w-b stopped heartbeating: dead after 30 s, deleted by the others an hour later.
        rows = store.read_sync(list_workers(dead_after=30, now=t + 40))
        assert [(w.id, w.alive) for w in rows] == [("w-a", True), ("w-b", False)]
        store.run_sync(wt.heartbeat(beat, now=t + FORGET_AFTER_SECONDS + 10))
        rows = store.read_sync(list_workers(dead_after=30, now=t + FORGET_AFTER_SECONDS + 10))
        assert [w.id for w in rows] == ["w-a"]
        # A worker whose row was deleted during a stall comes back at its next heartbeat.
        assert store.run_sync(wt.deregister("w-a")) is True
        assert store.run_sync(wt.deregister("w-a")) is False
        store.run_sync(wt.heartbeat(beat, now=t + FORGET_AFTER_SECONDS + 20))
        assert [w.id for w in store.read_sync(list_workers(30))] == ["w-a"]
    finally:
        store.close()


def workers_json(db: str, config: Path, *extra: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", db, "--config", str(config), "workers",
         "--json", *extra],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    return rows


def wait_until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_workers_command_lists_live_workers_and_forgets_stopped_ones(
    store_url: str, tmp_path: Path
) -> None:
    with LoopbackReceiver() as rx:
        config = tmp_path / "relaybox.toml"
        config.write_text(
            "[worker]\nheartbeat_seconds = 0.2\ndead_after_seconds = 1.0\n"
            f'\n[channels.sms]\ntransport = "webhook"\nurl = "{rx.url}"\n',
            encoding="utf-8",
        )
        killed = WorkerProcess("k", store_url, config, tmp_path / "k.log", 4).start()
        clean = WorkerProcess("c", store_url, config, tmp_path / "c.log", 4).start()
        try:
            killed.wait_ready()
            clean.wait_ready()
            rows = workers_json(store_url, config)
            assert sorted(int(str(r["pid"])) for r in rows) == sorted([killed.pid, clean.pid])
            for row in rows:
                assert row["channels"] == ["sms"] and row["alive"] is True
                assert row["concurrency"] == 4 and row["in_flight"] == 0
                assert row["version"] and row["host"]
            killed.kill()
            assert clean.stop() == 0
            # The clean stop deregistered at once; the killed one ages out after 1 s.
            wait_until(
                lambda: workers_json(store_url, config) == [], 20, "the dead worker aging out"
            )
            dead = workers_json(store_url, config, "--all")
            assert [(r["pid"], r["alive"]) for r in dead] == [(killed.pid, False)]
        finally:
            for w in (killed, clean):
                if w.alive():
                    w.kill()
