"""The console from the command line: bulk retry/cancel by filter (--dry-run, --yes, JSON),
and `relaybox serve` as a real process on PostgreSQL answering over loopback."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import time

import httpx
import pytest
from typer.testing import CliRunner

from _console import seed_store
from _harness import serving_process
from relaybox.cli import app
from relaybox.models import Status
from relaybox.outbox import inspect
from relaybox.store import open_store

runner = CliRunner()


def cli(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--db", url, *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_bulk_retry_and_cancel_by_filter(store_url: str):
    ids = seed_store(store_url)
    code, output = cli(store_url, "deliveries", "retry-all", "--channel", "sms", "--dry-run")
    assert code == 0 and "4 deliveries match" in output
    code, output = cli(store_url, "deliveries", "retry-all", "--channel", "sms")
    assert code == 1 and "add --yes" in output  # no terminal to confirm on: nothing changed
    code, output = cli(
        store_url, "deliveries", "retry-all", "--channel", "sms", "--status", "failed",
        "--since", "1h", "--yes", "--json",
    )  # fmt: skip
    assert code == 0, output
    assert json.loads(output) | {"filter": ""} == {
        "action": "retry", "filter": "", "matched": 3, "changed": 3, "skipped": 0,
        "dry_run": False,
    }  # fmt: skip
    code, output = cli(store_url, "deliveries", "cancel-all", "--status", "failed")
    assert code == 1 and "cannot cancel failed deliveries" in output
    code, output = cli(store_url, "deliveries", "cancel-all", "--since", "soon", "--yes")
    assert code == 1 and "neither a duration" in output
    code, output = cli(store_url, "deliveries", "cancel-all", "--channel", "chat", "--yes")
    assert code == 0 and "cancel: 1 of 1 deliveries" in output
    code, output = cli(store_url, "trace", f"delivery:{ids['sms-failed-2']}", "--json")
    said = [e["summary"] for e in json.loads(output)["events"]]
    assert any(f"retried by cli:{getpass.getuser()} (one of 3" in line for line in said), said
    store = open_store(store_url)
    try:
        assert store.read_sync(inspect.get_delivery(ids["sms-failed-2"])).status == "queued"
        assert store.read_sync(inspect.get_delivery(ids["chat-queued-5"])).status == "cancelled"
        assert store.read_sync(inspect.get_delivery(ids["sms-unknown-4"])).status == "unknown"
    finally:
        store.close()


def test_bulk_reports_progress_per_batch(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    from relaybox.console import bulk
    from relaybox.console.filters import DeliveryFilter

    seed_store(sqlite_url)
    monkeypatch.setattr(bulk, "BATCH", 2)  # three failed sms deliveries: batches of 2 and 1
    calls: list[tuple[int, int]] = []
    store = open_store(sqlite_url)
    try:
        where = DeliveryFilter(status=Status.FAILED, channel="sms")
        result = bulk.run_bulk(
            store, bulk.BulkAction.RETRY, where, who="cli:test",
            progress=lambda done, total: calls.append((done, total)),
        )  # fmt: skip
    finally:
        store.close()
    assert calls == [(2, 3), (3, 3)]
    assert (result.matched, result.changed, result.skipped) == (3, 3, 0)


def test_serve_runs_as_a_process_on_postgres(pg_url: str):
    seed_store(pg_url)
    env = {**os.environ, "RELAYBOX_DB": pg_url, "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith("RELAYBOX_CONSOLE_")]:
        del env[key]
    process, line = serving_process("serve", "--port", "0", env=env)
    try:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        base = f"http://127.0.0.1:{found.group(1)}"
        overview = httpx.get(f"{base}/api/v1/overview", timeout=10).json()
        assert overview["totals"]["queued"] == 3
        assert httpx.get(f"{base}/", timeout=10).status_code == 200
        assert httpx.get(f"{base}/static/htmx.min.js", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.wait(timeout=15)
    assert process.returncode in (0, -signal.SIGTERM), process.returncode
    assert time.monotonic() - started < 10
