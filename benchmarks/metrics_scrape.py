"""Does watching a worker slow it down? Ack latency with and without /metrics scraped every 100 ms.

A real worker process (noop transport) drains a backlog of 4-part replies. The **ack cycle**
of a part is the time between the sends of two consecutive parts of one delivery (the
``started_at`` of their attempt rows): the noop send of part *n* (instant), its acknowledgement
reaching the writer and committing, and the runner waking up to send part *n+1*. Its p99 is
compared between

* ``baseline``: ``relaybox worker`` without metrics, while the same scraper polls a **decoy**
  endpoint every 100 ms: a static page of the size of a real scrape, served by this benchmark
  process. On a 2-core machine the scraper's own CPU (and the server answering it) already
  lengthens the worker's tail, whoever answers; the decoy puts that load on both sides, so the
  ratio measures what serving ``/metrics`` costs the worker (about 14 % of p99 on PostgreSQL
  came from the scraping alone in a run without the decoy);
* ``scraped``: ``relaybox worker --metrics-port N`` (store gauges at ``--refresh`` seconds,
  default the worker's 5) while the scraper polls the worker's ``/metrics`` every 100 ms.

``--no-decoy`` runs the baseline with no scraper at all (the machine-level figure).
Runs alternate (baseline, scraped, baseline, scraped, ...) so drift on a shared machine hits
both; the median of each side is reported. Target: scraped p99 within 10% of baseline.

    python -m benchmarks.metrics_scrape [sqlite|postgres] [--runs 5] [--replies 5000]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
DECOY_BYTES = 18_000  # about what a worker's /metrics weighs (uncompressed text)
DEFAULT_REFRESH = 5.0  # the worker's own default metrics_refresh_seconds


class _Decoy:
    """A static page served by this process, for the baseline's scraper to poll."""

    def __init__(self) -> None:
        body = b"# decoy\n" + b"x" * DECOY_BYTES

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    refresh: float | None = DEFAULT_REFRESH,
    decoy: bool = False,
) -> dict[str, Any]:
    """One drain; ``metrics``: serve /metrics (default: when scraped); ``refresh``: gauges;
    ``decoy``: not scraped, but a scraper polls a decoy page of this process meanwhile."""
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
        decoy_page = _Decoy() if decoy and not scraped else None
        scraper = None
        if scraped:
            scraper = _Scraper(f"http://127.0.0.1:{port}/metrics")
        elif decoy_page is not None:
            scraper = _Scraper(decoy_page.url)
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
            if decoy_page is not None:
                decoy_page.close()
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
    kind: str,
    runs: int = 5,
    replies: int = 5000,
    refresh: float = DEFAULT_REFRESH,
    decoy: bool = True,
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for _ in range(runs):
        results.append(one_run(kind, replies, scraped=False, decoy=decoy))
        results.append(one_run(kind, replies, scraped=True, refresh=refresh))

    def median(scraped: bool, key: str) -> float:
        return round(statistics.median(r[key] for r in results if r["scraped"] is scraped), 3)

    base, watched = median(False, "p99_ms"), median(True, "p99_ms")
    return {
        "store": kind,
        "runs": runs,
        "replies": replies,
        "gauge_refresh_seconds": refresh,
        "baseline_scraped_decoy": decoy,
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
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--replies", type=int, default=5000)
    parser.add_argument(
        "--refresh",
        type=float,
        default=DEFAULT_REFRESH,
        help="seconds between store gauge reads while scraped (the worker's default: 5)",
    )
    parser.add_argument(
        "--no-decoy", action="store_true", help="baseline without any scraper running"
    )
    args = parser.parse_args()
    result = measure(args.store, args.runs, args.replies, args.refresh, not args.no_decoy)
    print(json.dumps(result, indent=2))
