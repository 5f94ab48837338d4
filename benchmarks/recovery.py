"""Measurement 5: SIGKILL of a worker holding a delivery, to that delivery's next part surfaced.

Worker A (webhook transport to a loopback endpoint that never answers) claims a 4-part reply
and hangs on part 1. Worker B (no-op transport, same channel) is running and idle. The suite
SIGKILLs A and measures until B surfaced part 1 (resent under the same GUID). Both workers use
the default settings (lease_seconds = 5): B can claim once A's lease lapses, which is at most
one lease after A's last renewal.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from benchmarks.common import (
    fresh_store,
    start_worker,
    stop_worker,
    summary,
    wait_until,
    work_dir,
    write_config,
)
from benchmarks.seed import requests
from benchmarks.slow_server import SlowServer
from relaybox.outbox.enqueue import EnqueueUnit
from relaybox.store import open_store


def _row(store: Any, sql: str, params: tuple[Any, ...]) -> Any:
    def unit(tx: Any) -> Any:
        marker = "%s" if tx.dialect == "postgres" else "?"
        return tx._conn.execute(sql.replace("?", marker), params).fetchone()

    return store.read_sync(unit)


def _one(kind: str, hang: SlowServer) -> float:
    with fresh_store(kind) as bench:
        store = open_store(bench.url)
        folder = work_dir()
        slow = folder / f"recovery-a-{os.getpid()}.toml"
        slow.write_text(
            f'[channels.bench]\ntransport = "webhook"\nurl = "{hang.url}"\nmax_age_seconds = 0\n'
        )
        fast = write_config(folder)  # default [worker] settings, no-op transport
        a = start_worker(bench.url, slow)
        b = None
        try:
            time.sleep(1.0)
            [req] = requests(1, 1, tag="rec")
            d = store.run_sync(EnqueueUnit(req)).delivery
            guid = d.parts[0].guid
            wait_until(lambda: any(key == guid for _, key in hang.received), timeout=30)
            b = start_worker(bench.url, fast)
            time.sleep(1.5)  # B is up and idle-polling before A dies
            killed = time.time()
            a.send_signal(signal.SIGKILL)
            a.wait()
            query = (
                "SELECT started_at, latency_ms FROM delivery_attempts"
                " WHERE delivery_id = ? AND part_index = 0 AND outcome = 'surfaced'"
            )
            wait_until(lambda: _row(store, query, (d.id,)) is not None, timeout=60, interval=0.02)
            row = _row(store, query, (d.id,))
            surfaced = float(row["started_at"]) + float(row["latency_ms"] or 0) / 1000
            return surfaced - killed
        finally:
            stop_worker(a)
            if b is not None:
                stop_worker(b)
            store.close()
            slow.unlink(missing_ok=True)
            fast.unlink(missing_ok=True)


def measure(kind: str, runs: int = 3) -> dict[str, Any]:
    hang = SlowServer(lambda: None)  # accepts the request, never answers
    try:
        seconds = [_one(kind, hang) for _ in range(runs)]
    finally:
        hang.close()
    return {"store": kind, "lease_seconds": 5.0, "recovery_seconds": summary(seconds, 2)}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite", runs=1), indent=2))
