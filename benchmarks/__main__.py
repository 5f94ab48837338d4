"""Run the whole suite: ``python -m benchmarks`` (``bash benchmarks/run.sh`` from a fresh clone).

Writes benchmarks/results/latest.json and latest.md. Steps run in the order of the issue,
the raw store limit first; a step that fails is recorded with its error and the suite goes on
(the exit status is then 1). ``--runs 1`` for a quick look, ``--only latency,recovery`` to run
some steps.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from benchmarks import (
    console_queries,
    enqueue,
    latency,
    memory,
    memory_merges,
    metrics_scrape,
    operator_queries,
    peer_queues,
    raw_store,
    recovery,
    report,
    scale,
    throughput,
)
from benchmarks.common import machine

STEPS = ("raw_store", "throughput", "enqueue", "peers", "latency", "recovery", "memory",
         "operator_queries", "console_queries", "memory_merges", "scale",
         "metrics_scrape")  # fmt: skip
# The worker settings the throughput runs use (documented in docs/performance.md).
THROUGHPUT_SETTINGS = {"concurrency": 1024, "claim_batch": 256}


def _throughput(runs: int, raw: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for kind, processes, reference in (
        ("sqlite", 1, "sqlite_commits_per_second"),
        ("postgres", 1, "postgres_1_connection_commits_per_second"),
        ("postgres", 4, "postgres_8_connections_commits_per_second"),
    ):
        row = throughput.measure(kind, processes, runs=runs, worker_settings=THROUGHPUT_SETTINGS)
        if raw:
            row["raw_reference"] = reference
            row["ratio_to_raw_commits"] = (
                row["parts_per_second"]["median"] / raw[reference]["median"]
            )
        rows.append(row)
        print(f"    {kind} x {processes}: {row['parts_per_second']['median']:,.0f} parts/s")
    return rows


def per_run_ratios(ours: dict[str, Any], peer: dict[str, Any]) -> list[float]:
    """Our run i against the peer's run i (same position in the invocation)."""
    mine = ours["parts_per_second"]["samples"]
    theirs = peer["process_per_second"]["samples"]
    return [a / b for a, b in zip(mine, theirs, strict=False)]


def _targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    tp = {(t["store"], t["worker_processes"]): t for t in r.get("throughput") or []}
    peers = r.get("peers") or {}
    sqlite1 = tp.get(("sqlite", 1))
    pg4 = tp.get(("postgres", 4))
    if sqlite1:
        rate = sqlite1["parts_per_second"]["median"]
        add("SQLite, 1 worker: ≥ 10,000 parts/s", f"{rate:,.0f}", rate >= 10_000)
        if peers.get("huey"):
            ratios = per_run_ratios(sqlite1, peer_queues.best(peers["huey"]))
            add("SQLite, 1 worker: ≥ 3x huey's best, in every run",
                " / ".join(f"{x:.2f}x" for x in ratios), min(ratios) >= 3)  # fmt: skip
    if pg4:
        rate = pg4["parts_per_second"]["median"]
        add("PostgreSQL, 4 workers: ≥ 8,000 parts/s", f"{rate:,.0f}", rate >= 8_000)
        if peers.get("pgqueuer"):
            best = peer_queues.best(peers["pgqueuer"])
            ratios = per_run_ratios(pg4, best)
            measured = " / ".join(f"{x:.2f}x" for x in ratios) + f" ({best['settings']})"
            add("PostgreSQL, 4 workers: ≥ 1.5x pgqueuer's best, in every run", measured,
                min(ratios) >= 1.5)  # fmt: skip
    for row in (tp.get(("postgres", 1)), pg4):
        if row and row.get("cpu_us_per_part"):
            worst = row["cpu_us_per_part"]["max"]
            name = f"PostgreSQL, {row['worker_processes']} worker(s): ≤ 100 µs CPU per part"
            add(f"{name} (workers + backends), every run", f"{worst:.0f} µs (worst run)",
                worst <= 100)  # fmt: skip
    for row in r.get("latency") or []:
        add(f"{row['store']} latency p50 ≤ 5 ms", f"{row['p50_ms']:.1f} ms", row["p50_ms"] <= 5)
        add(f"{row['store']} latency p99 ≤ 25 ms", f"{row['p99_ms']:.1f} ms", row["p99_ms"] <= 25)
    for row in r.get("recovery") or []:
        worst = row["recovery_seconds"]["max"]
        add(f"{row['store']} recovery ≤ 10 s (worst run)", f"{worst:.2f} s", worst <= 10)
    for row in r.get("operator_queries") or []:
        for name, q in row["queries"].items():
            add(f"{row['store']} {name} ≤ 50 ms (slowest of 15)", f"{q['max_ms']:.1f} ms",
                q["max_ms"] <= 50)  # fmt: skip
    for row in r.get("console_queries") or []:
        for name in row["budgeted"]:
            q = row["queries"][name]
            add(f"{row['store']} console {name} ≤ 50 ms (median of 15)", f"{q['median_ms']:.1f} ms",
                q["median_ms"] <= 50)  # fmt: skip
    for row in r.get("metrics_scrape") or []:
        add(f"{row['store']} ack-cycle p99 with /metrics scraped every 100 ms within 10%",
            f"{row['scraped_p99_ms']:.2f} ms vs {row['baseline_p99_ms']:.2f} ms"
            f" ({row['p99_ratio']}x)", row["within_10_percent"])  # fmt: skip
    for row in r.get("memory") or []:
        add(f"{row['store']} worker peak RSS ≤ 150 MB at 1,000 in flight",
            f"{row['peak_rss_mb']:.0f} MB", row["peak_rss_mb"] <= 150)  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min-max)")
    parser.add_argument("--only", default="", help=f"comma-separated steps of: {','.join(STEPS)}")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s] or list(STEPS)
    unknown = set(only) - set(STEPS)
    if unknown:
        parser.error(f"unknown step(s): {', '.join(sorted(unknown))}")

    started = time.monotonic()
    results: dict[str, Any] = {"runs": args.runs, "machine": machine(), "errors": {}}
    steps: dict[str, Any] = {
        "raw_store": lambda: raw_store.measure(args.runs),
        "throughput": lambda: _throughput(args.runs, results.get("raw_store")),
        "enqueue": lambda: [enqueue.measure(k, args.runs) for k in ("sqlite", "postgres")],
        "peers": lambda: peer_queues.measure(args.runs),
        "latency": lambda: [latency.measure(k) for k in ("sqlite", "postgres")],
        "recovery": lambda: [recovery.measure(k, args.runs) for k in ("sqlite", "postgres")],
        "memory": lambda: [memory.measure(k) for k in ("sqlite", "postgres")],
        "operator_queries": lambda: [operator_queries.measure(k) for k in ("sqlite", "postgres")],
        "scale": lambda: [scale.measure(k, THROUGHPUT_SETTINGS) for k in ("sqlite", "postgres")],
        "console_queries": lambda: [console_queries.measure(k) for k in ("sqlite", "postgres")],
        "memory_merges": lambda: [
            memory_merges.measure(k, runs=args.runs) for k in ("sqlite", "postgres")
        ],
        "metrics_scrape": lambda: [
            metrics_scrape.measure(k, max(args.runs, 5)) for k in ("sqlite", "postgres")
        ],
    }
    for name in STEPS:
        if name not in only:
            continue
        step_started = time.monotonic()
        print(f"[{time.monotonic() - started:5.0f} s] {name} ...", flush=True)
        try:
            results[name] = steps[name]()
        except Exception as error:  # noqa: BLE001 - record it, run the other steps
            traceback.print_exc()
            results["errors"][name] = f"{type(error).__name__}: {error}"
        print(f"        done in {time.monotonic() - step_started:.0f} s", flush=True)
    results["targets"] = _targets(results)
    results["duration_seconds"] = time.monotonic() - started
    results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report.write(results)
    print(report.markdown(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
