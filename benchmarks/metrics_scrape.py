"""Does watching a worker slow it down? Ack latency with and without /metrics scraped every 100 ms.

A real worker process (noop transport) drains a backlog of 4-part replies. The **ack cycle**
of a part is the time between the sends of two consecutive parts of one delivery (the
``started_at`` of their attempt rows): the noop send of part *n* (instant), its acknowledgement
reaching the writer and committing, and the runner waking up to send part *n+1*. Its p99 is
compared between

* ``baseline``: ``relaybox worker`` without metrics;
* ``scraped``: ``relaybox worker --metrics-port N`` with ``metrics_refresh_seconds = 0.1`` (the
  store gauges read through the store's read path every 100 ms) while a client scrapes
  ``/metrics`` every 100 ms.

Runs alternate (baseline, scraped, baseline, scraped, ...) so drift on a shared machine hits
both; the median of each side is reported. Target: scraped p99 within 10% of baseline.

    python -m benchmarks.metrics_scrape [sqlite|postgres] [--runs 3] [--replies 3000]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from typing import Any

import httpx

from benchmarks.common import (
    fresh_store,
    percentile,
    start_worker,
    stop_worker,
    wait_until,
    work_dir,
    write_config,
)
from benchmarks.seed import enqueue_bulk, requests
from benchmarks.throughput import any_active
from relaybox.store import open_store
from relaybox.workers.inspect import list_workers

SCRAPE_EVERY = 0.1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ack_cycles(store: Any) -> list[float]:
    def unit(tx: Any) -> list[float]:
        rows = tx._conn.execute(
            "SELECT delivery_id, part_index, started_at FROM delivery_attempts"
            " WHERE outcome = 'surfaced' ORDER BY delivery_id, part_index"
        ).fetchall()
        cycles: list[float] = []
        previous: dict[int, float] = {}
        for r in rows:
            delivery, at = int(r["delivery_id"]), float(r["started_at"])
            if delivery in previous:
                cycles.append((at - previous[delivery]) * 1000.0)
            previous[delivery] = at
        return cycles

    return list(store.read_sync(unit))


class _Scraper(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.scrapes = 0
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.wait(SCRAPE_EVERY):
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.scrapes += ok
                self.errors += not ok


def one_run(
    kind: str,
    replies: int,
    *,
    scraped: bool,
    metrics: bool | None = None,
    refresh: float | None = SCRAPE_EVERY,
) -> dict[str, Any]:
    """One drain; ``metrics``: serve /metrics (default: when scraped); ``refresh``: gauges."""
    metrics = scraped if metrics is None else metrics
    with fresh_store(kind) as bench:
        store = open_store(bench.url)
        settings: dict[str, Any] = {"concurrency": 32}
        if metrics and refresh is not None:
            settings["metrics_refresh_seconds"] = refresh
        config = write_config(work_dir(), **settings)
        port = _free_port()
        extra = ["--metrics-port", str(port)] if metrics else []
        worker = start_worker(bench.url, config, extra=extra)
        scraper = _Scraper(f"http://127.0.0.1:{port}/metrics") if scraped else None
        try:
            # Idle and registered (the live workers registry says so), scraped if it is to be.
            wait_until(lambda: _registered(store), timeout=30, interval=0.05)
            if scraper is not None:
                scraper.start()
                wait_until(lambda: scraper.scrapes >= 3, timeout=30, interval=0.05)
            enqueue_bulk(store, requests(replies, replies, parts=4, tag="scrape"))
            started = time.monotonic()
            wait_until(lambda: not any_active(store), timeout=300, interval=0.05)
            elapsed = time.monotonic() - started
            cycles = _ack_cycles(store)
        finally:
            if scraper is not None:
                scraper.stop.set()
                scraper.join(timeout=10)
            stop_worker(worker)
            store.close()
            config.unlink(missing_ok=True)
    return {
        "scraped": scraped,
        "cycles": len(cycles),
        "p50_ms": percentile(cycles, 50),
        "p99_ms": percentile(cycles, 99),
        "parts_per_second": replies * 4 / elapsed,
        "scrapes": 0 if scraper is None else scraper.scrapes,
        "scrape_errors": 0 if scraper is None else scraper.errors,
    }


def _registered(store: Any) -> bool:
    return bool(store.read_sync(list_workers(30.0)))


def measure(
    kind: str, runs: int = 3, replies: int = 3000, refresh: float = SCRAPE_EVERY
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for _ in range(runs):
        results.append(one_run(kind, replies, scraped=False))
        results.append(one_run(kind, replies, scraped=True, refresh=refresh))

    def median(scraped: bool, key: str) -> float:
        return round(statistics.median(r[key] for r in results if r["scraped"] is scraped), 3)

    base, watched = median(False, "p99_ms"), median(True, "p99_ms")
    return {
        "store": kind,
        "runs": runs,
        "replies": replies,
        "gauge_refresh_seconds": refresh,
        "baseline_p50_ms": median(False, "p50_ms"),
        "baseline_p99_ms": base,
        "scraped_p50_ms": median(True, "p50_ms"),
        "scraped_p99_ms": watched,
        "p99_ratio": round(watched / base, 3) if base else None,
        "baseline_parts_per_second": median(False, "parts_per_second"),
        "scraped_parts_per_second": median(True, "parts_per_second"),
        "scrapes": sum(r["scrapes"] for r in results),
        "scrape_errors": sum(r["scrape_errors"] for r in results),
        "within_10_percent": bool(base) and watched <= base * 1.10,
        "each_run": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_scrape")
    parser.add_argument("store", nargs="?", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replies", type=int, default=3000)
    parser.add_argument(
        "--refresh",
        type=float,
        default=SCRAPE_EVERY,
        help="seconds between store gauge reads while scraped (worst case 0.1; worker default 5)",
    )
    args = parser.parse_args()
    print(json.dumps(measure(args.store, args.runs, args.replies, args.refresh), indent=2))
