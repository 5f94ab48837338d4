"""Migrations: several processes migrating one fresh store at once all succeed, each step once.

Runs on both stores (PostgreSQL serialises with an advisory lock, SQLite with BEGIN IMMEDIATE).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from relaybox.store import open_store
from relaybox.store.migrations import available_migrations


def test_concurrent_migrate_processes_apply_each_migration_once(
    store_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "relaybox", "--db", store_url, "migrate", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for _ in range(6)
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [r.returncode for r in racers] == [0] * 6, [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    dialect = "postgres" if store_url.startswith("postgres") else "sqlite"
    latest = [m.version for m in available_migrations(dialect)]
    applied = sorted(v for report in reports for v in report["applied"])
    assert applied == latest  # every step applied by exactly one of the racers
    assert {report["version"] for report in reports} == {latest[-1]}

    store = open_store(store_url, run_migrations=False)
    try:
        rows = store.read_sync(lambda tx: tx.fetch_all("applied_migrations"))
    finally:
        store.close()
    assert [int(r["version"]) for r in rows] == latest
