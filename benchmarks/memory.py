"""Measurement 7: a worker's peak RSS with 1,000 deliveries in flight on a slow transport.

One worker process (concurrency 1,000) sends 4-part replies through the webhook transport to a
loopback endpoint that answers each request after 2 s. Once 1,000 deliveries are held at the
same time, the worker's peak resident set (VmHWM) is read from /proc.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import fresh_store, start_worker, stop_worker, wait_until, work_dir
from benchmarks.seed import enqueue_bulk, requests
from benchmarks.slow_server import SlowServer
from relaybox.store import open_store

IN_FLIGHT = 1000


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def _sending(store: Any) -> int:
    def unit(tx: Any) -> int:
        row = tx._conn.execute(
            "SELECT count(*) AS n FROM deliveries WHERE status = 'sending'"
        ).fetchone()
        return int(row["n"])

    return int(store.read_sync(unit))


def measure(kind: str) -> dict[str, Any]:
    slow = SlowServer(lambda: 2.0)
    try:
        with fresh_store(kind) as bench:
            store = open_store(bench.url)
            config = work_dir() / f"memory-{kind}.toml"
            config.write_text(
                f"[worker]\nconcurrency = {IN_FLIGHT}\nclaim_batch = 256\n\n"
                f'[channels.bench]\ntransport = "webhook"\nurl = "{slow.url}"\n'
                "max_age_seconds = 0\n"
            )
            worker = start_worker(bench.url, config)
            try:
                time.sleep(1.5)
                idle_kib = _kib(worker.pid, "VmRSS")
                enqueue_bulk(store, requests(IN_FLIGHT, IN_FLIGHT, tag="mem"), chunk=IN_FLIGHT)
                wait_until(lambda: _sending(store) >= IN_FLIGHT, timeout=60, interval=0.05)
                held_at = time.monotonic()
                # let every held delivery get through a send or two at full concurrency
                while time.monotonic() - held_at < 5.0:
                    time.sleep(0.25)
                peak_kib = _kib(worker.pid, "VmHWM")
                in_flight = _sending(store)
            finally:
                stop_worker(worker)
                store.close()
                config.unlink(missing_ok=True)
    finally:
        slow.close()
    return {
        "store": kind,
        "deliveries_in_flight": IN_FLIGHT,
        "in_flight_when_read": in_flight,
        "transport": "webhook to a loopback endpoint answering after 2 s",
        "idle_rss_mb": round(idle_kib / 1024, 1),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else "sqlite"), indent=2))
