"""``relaybox health`` tells the truth: named checks over the queue, live workers, channels.

State is made with the real units (enqueue, claim, finish, worker heartbeats) on both stores,
and read back through the CLI, whose exit status a probe relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from relaybox.config import parse_config
from relaybox.models import Status
from relaybox.outbox import transitions as tr
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Store, open_store
from relaybox.workers import transitions as wt
from relaybox.workers.transitions import WorkerRecord

CHANNELS = '[channels.sms]\ntransport = "webhook"\nurl = "http://127.0.0.1:9/send"\n'


def health(db: str, config: Path) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", db, "--config", str(config), "health",
         "--json"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"},
    )  # fmt: skip
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def enqueue(store: Store, thread: str) -> int:
    config = parse_config({"channels": {"sms": {"transport": "memory"}}})
    request = build_request(config.channel("sms"), thread_id=thread, recipient="u", parts=["x"])
    return store.run_sync(EnqueueUnit(request)).delivery.id


def heartbeat(store: Store, state: dict[str, Any]) -> None:
    now = time.time()
    record = WorkerRecord(
        id="w-live", host="h", pid=1, version="t", channels=("sms",), concurrency=4,
        started_at=now, channel_state=state,
    )  # fmt: skip
    store.run_sync(wt.heartbeat(record, now=now))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(CHANNELS, encoding="utf-8")
    return path


def test_queued_work_without_a_live_worker_is_unhealthy(store_url: str, config: Path) -> None:
    store = open_store(store_url)
    try:
        enqueue(store, "t1")
        code, report, _ = health(store_url, config)
        assert code == 2 and report["ok"] is False
        unserved = checks(report)["unserved_channels"]
        assert (unserved["ok"], unserved["value"], unserved["detail"]) == (False, 1, "sms")
        heartbeat(store, {"sms": {"consecutive_failures": 0}})
        code, report, _ = health(store_url, config)
        assert code == 0, report
        assert checks(report)["unserved_channels"]["ok"] is True
        assert report["metrics"]["live_workers"] == 1
    finally:
        store.close()


def test_failing_streak_and_long_pause_are_named(store_url: str, config: Path) -> None:
    store = open_store(store_url)
    try:
        now = time.time()
        heartbeat(
            store,
            {"sms": {"consecutive_failures": 11, "last_error": "HTTP 500",
                     "paused_since": now - 700, "paused_until": now + 60}},
        )  # fmt: skip
        code, report, _ = health(store_url, config)
        assert code == 2
        by_name = checks(report)
        assert by_name["consecutive_failures"]["ok"] is False
        assert by_name["consecutive_failures"]["value"] == 11
        assert by_name["consecutive_failures"]["detail"] == "sms: 11"
        assert by_name["paused_seconds"]["ok"] is False
        assert by_name["paused_seconds"]["value"] >= 700
        # Thresholds come from relaybox.toml.
        config.write_text(
            CHANNELS + "\n[health]\nmax_consecutive_failures = 20\nmax_paused_seconds = 3600\n",
            encoding="utf-8",
        )
        code, report, _ = health(store_url, config)
        assert code == 0, report
    finally:
        store.close()


def test_failure_rate_needs_its_minimum_sample(store_url: str, config: Path) -> None:
    store = open_store(store_url)
    try:
        for n in range(3):
            enqueue(store, f"f{n}")
        claimed = store.run_sync(tr.claim("w", ["sms"], 10, 30.0))
        assert len(claimed) == 3
        for d in claimed:
            store.run_sync(tr.finish(tr.Lease(d.id, d.lease_epoch), Status.FAILED, "boom"))
        heartbeat(store, {})
        code, report, _ = health(store_url, config)
        rate = checks(report)["failure_rate"]
        assert code == 0 and rate["ok"] is True and rate["value"] == 1.0
        assert rate["detail"] == "not judged: 3 finished, fewer than min_failure_sample (20)"
        config.write_text(CHANNELS + "\n[health]\nmin_failure_sample = 3\n", encoding="utf-8")
        code, report, _ = health(store_url, config)
        assert code == 2 and checks(report)["failure_rate"]["ok"] is False
    finally:
        store.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('max_consecutive_failures = "ten"', "health.max_consecutive_failures must be a number"),
        ("min_failure_sample = 2.5", "health.min_failure_sample must be a whole number"),
        ("require_live_worker = 1", "health.require_live_worker must be true or false"),
        ("max_paused_seconds = 0", "health.max_paused_seconds must be greater than 0"),
    ],
)
def test_wrong_typed_thresholds_are_named_and_never_healthy(
    sqlite_url: str, config: Path, line: str, message: str
) -> None:
    open_store(sqlite_url).close()  # an existing store: health never creates one
    config.write_text(CHANNELS + f"\n[health]\n{line}\n", encoding="utf-8")
    code, report, stderr = health(sqlite_url, config)
    # One line saying what is wrong; an answer by the defaults; and never "healthy".
    (warning,) = stderr.strip().splitlines()
    assert warning.startswith("warning: ") and message in warning
    assert code == 2 and report["ok"] is False
    broken = checks(report)["config"]
    assert broken["ok"] is False and message in broken["detail"]
