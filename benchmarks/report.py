"""Turn the suite's results into ``results/latest.json`` and a Markdown table (``latest.md``)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.common import RESULTS_DIR


def _range(s: dict[str, Any], unit: str = "") -> str:
    return f"{s['median']:,.0f}{unit} ({s['min']:,.0f}-{s['max']:,.0f})"


def _secs(s: dict[str, Any]) -> str:
    return f"{s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f})"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def _raw_ratio(row: dict[str, Any]) -> str:
    if "ratio_to_raw_commits" not in row:  # the raw store step did not run
        return "-"
    return f"{row['ratio_to_raw_commits']:.2f}x ({row['raw_reference']})"


def _cpu_runs(row: dict[str, Any]) -> str:
    """CPU µs per part of each run, split into workers + PostgreSQL backends."""
    cells = []
    for run in row.get("cpu_us_per_part_by_group") or []:
        if "postgres" in run:
            total = run["workers"] + run["postgres"]
            cells.append(f"{total:.0f} ({run['workers']:.0f} + {run['postgres']:.0f})")
        else:
            cells.append(f"{run['workers']:.0f}")
    return ", ".join(cells) or "-"


def _peer_cpu(config: dict[str, Any]) -> str:
    runs = config.get("cpu_us_per_job_by_group") or []
    samples = (config.get("cpu_us_per_job") or {}).get("samples") or []
    cells = []
    for index, total in enumerate(samples):
        split = runs[index] if index < len(runs) else None
        if split:
            cells.append(f"{total:.0f} ({split['workers']:.0f} + {split['postgres']:.0f})")
        else:
            cells.append(f"{total:.0f}")
    return ", ".join(cells) or "-"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# relaybox benchmark results",
        "",
        f"Run {results['finished_at']} in {results['duration_seconds']:.0f} s on {m['cpu']}, "
        f"{m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql']} (synchronous_commit="
        f"{m['pg_synchronous_commit']}). Figures: median of {results['runs']} runs "
        "(min-max). Every ratio is between figures of this same run.",
        "",
    ]
    raw = results.get("raw_store")
    if raw:
        lines += [
            "## 1. Raw store limit (single-row commits/s)",
            "",
            "| store | commits/s |",
            "| --- | --- |",
            f"| SQLite, relaybox's pragmas (WAL, synchronous=FULL) | "
            f"{_range(raw['sqlite_commits_per_second'])} |",
            f"| SQLite, synchronous=NORMAL (reference only) | "
            f"{_range(raw['sqlite_normal_commits_per_second'])} |",
            f"| PostgreSQL, 1 connection | "
            f"{_range(raw['postgres_1_connection_commits_per_second'])} |",
            f"| PostgreSQL, 8 connections | "
            f"{_range(raw['postgres_8_connections_commits_per_second'])} |",
            "",
        ]
    tp = results.get("throughput")
    if tp:
        lines += [
            "## 2. Throughput: delivered parts/s (no-op transport, 4-part replies)",
            "",
            "| store | worker processes | parts/s | x raw commits/s | CPU µs/part, each run "
            "(workers + PostgreSQL backends) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in tp:
            lines.append(
                f"| {row['store']} | {row['worker_processes']} | "
                f"{_range(row['parts_per_second'])} | {_raw_ratio(row)} | {_cpu_runs(row)} |"
            )
        settings = tp[0]["settings"]
        lines += [
            "",
            f"Each run: {tp[0]['deliveries_per_run']:,} replies over {tp[0]['threads']:,} "
            f"threads, worker settings {settings}.",
            "",
        ]
    enq = results.get("enqueue")
    if enq:
        lines += [
            "Enqueue (64 concurrent callers, each reply acknowledged after its commit): "
            + "; ".join(
                f"{e['store']} {_range(e['replies_per_second'])} replies/s "
                f"({e['replies_per_second']['median'] * e['parts_per_reply']:,.0f} parts/s)"
                for e in enq
            )
            + ".",
            "",
        ]
        if any(e.get("bulk_replies_per_second") for e in enq):
            lines += [
                "Bulk enqueue (`Relaybox.enqueue_many`, one caller, one transaction per batch): "
                + "; ".join(
                    f"{e['store']} "
                    + ", ".join(
                        f"batches of {size}: {_range(rate)} replies/s"
                        for size, rate in e["bulk_replies_per_second"].items()
                    )
                    for e in enq
                    if e.get("bulk_replies_per_second")
                )
                + ".",
                "",
            ]
    peers = results.get("peers")
    if peers:
        lines += [
            "## 3. Peer queues, same machine, same PostgreSQL server, no-op jobs",
            "",
            "| library | settings | enqueue jobs/s | processed jobs/s | CPU µs/job, each run |",
            "| --- | --- | --- | --- | --- |",
        ]
        for configs in peers.values():
            for c in configs:
                settings = ", ".join(f"{k}={v}" for k, v in c["settings"].items())
                lines.append(
                    f"| {c['library']} {c['version']} | {settings} | "
                    f"{_range(c['enqueue_per_second'])} | {_range(c['process_per_second'])} | "
                    f"{_peer_cpu(c)} |"
                )
        lines.append("")
    lat = results.get("latency")
    if lat:
        lines += [
            "## 4. Latency: enqueue to first part surfaced (low load, default settings)",
            "",
            "| store | p50 | p99 | max | samples |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in lat:
            lines.append(
                f"| {row['store']} | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms | "
                f"{row['max_ms']:.1f} ms | {row['samples']} |"
            )
        lines.append("")
    rec = results.get("recovery")
    if rec:
        lines += [
            "## 5. Recovery: SIGKILL of the worker holding a delivery → its next part surfaced",
            "",
            "| store | lease_seconds | recovery |",
            "| --- | --- | --- |",
        ]
        for row in rec:
            lines.append(
                f"| {row['store']} | {row['lease_seconds']:g} (default) | "
                f"{_secs(row['recovery_seconds'])} |"
            )
        lines.append("")
    ops = results.get("operator_queries")
    if ops:
        lines += [
            "## 6. Operator queries (1,000,000 failures, 5,000,000 attempts)",
            "",
            "| store | failures in the last hour | … grouped by chat | trace of one inbound |",
            "| --- | --- | --- | --- |",
        ]
        for row in ops:
            q = row["queries"]
            cells = [
                f"{q[k]['median_ms']:.1f} ms (max {q[k]['max_ms']:.1f})"
                for k in ("failures_last_hour", "failures_last_hour_by_thread",
                          "trace_of_one_inbound")
            ]  # fmt: skip
            lines.append(f"| {row['store']} | " + " | ".join(cells) + " |")
        lines.append("")
    console = results.get("console_queries")
    if console:
        lines += [
            "## 6b. Console queries (1,000,000 deliveries, 5,000,000 attempts, 1,000,000 failures)",
            "",
            "Median (max of 15) per query, through the console's read units on the read path.",
            "",
            "| query | " + " | ".join(row["store"] for row in console) + " |",
            "| --- | " + " | ".join("---" for _ in console) + " |",
        ]
        for name in console[0]["queries"]:
            cells = [
                f"{row['queries'][name]['median_ms']:.1f} ms ({row['queries'][name]['max_ms']:.1f})"
                for row in console
            ]
            budget = " (≤ 50 ms)" if name in console[0]["budgeted"] else ""
            lines.append(f"| {name}{budget} | " + " | ".join(cells) + " |")
        lines.append("")
    mem = results.get("memory")
    if mem:
        lines += [
            "## 7. Memory: worker peak RSS with 1,000 deliveries in flight (slow transport)",
            "",
            "| store | idle RSS | peak RSS |",
            "| --- | --- | --- |",
        ]
        for row in mem:
            lines.append(
                f"| {row['store']} | {row['idle_rss_mb']:.0f} MB | {row['peak_rss_mb']:.0f} MB |"
            )
        lines.append("")
    sc = results.get("scale")
    if sc:
        lines += [
            "## 8. Scale: 1,000,000 queued 1-part replies over 100,000 threads",
            "",
            f"Claims of {sc[0]['claim_limit']} heads (each followed by acknowledging them), and "
            f"one worker process draining for {sc[0]['window_seconds']:g} s, against a small "
            "backlog in the same run.",
            "",
            "| store | claim ms, 1M queued (median / max) | claim ms, "
            f"{sc[0]['shallow']['replies']:,} queued | ratio | parts/s, 1M queued | parts/s, "
            f"{sc[0]['drain_shallow']['replies']:,} queued | ratio | seeding 1M |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in sc:
            deep, shallow, drain = row["deep"], row["shallow"], row["drain_shallow"]
            lines.append(
                f"| {row['store']} | {deep['claim_ms_median']:.1f} / {deep['claim_ms_max']:.1f} "
                f"| {shallow['claim_ms_median']:.1f} / {shallow['claim_ms_max']:.1f} | "
                f"{row['claim_ratio_deep_to_shallow']:.2f}x | {deep['parts_per_second']:,} | "
                f"{drain['parts_per_second']:,} | {row['parts_ratio_deep_to_shallow']:.2f}x | "
                f"{deep['seed_seconds']:.0f} s |"
            )
        lines.append("")
    ms = results.get("metrics_scrape")
    if ms:
        lines += [
            "## 9. Watching a worker: ack cycle with and without /metrics scraped every 100 ms",
            "",
            f"{ms[0]['replies']:,} 4-part replies drained by one worker (noop transport), "
            f"{ms[0]['runs']} alternating runs each side; medians. Baseline: the worker without "
            "metrics while the same scraper polls a decoy page of the benchmark process (the "
            "scraping's own CPU on a 2-core machine hits both sides); scraped: the worker "
            "serving /metrics, store gauges every "
            f"{ms[0]['gauge_refresh_seconds']:g} s.",
            "",
            "| store | p50 ms (baseline / scraped) | p99 ms (baseline / scraped) | p99 ratio "
            "| parts/s (baseline / scraped) | scrapes (errors) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in ms:
            lines.append(
                f"| {row['store']} | {row['baseline_p50_ms']:.2f} / {row['scraped_p50_ms']:.2f} "
                f"| {row['baseline_p99_ms']:.2f} / {row['scraped_p99_ms']:.2f} "
                f"| {row['p99_ratio']}x | {row['baseline_parts_per_second']:,.0f} / "
                f"{row['scraped_parts_per_second']:,.0f} | {row['scrapes']} "
                f"({row['scrape_errors']}) |"
            )
        lines.append("")
    targets = results.get("targets")
    if targets:
        lines += ["## Targets", "", "| target | measured | |", "| --- | --- | --- |"]
        for t in targets:
            lines.append(f"| {t['target']} | {t['measured']} | {_verdict(t['met'])} |")
        lines.append("")
    return "\n".join(lines)


def write(results: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / "latest.md").write_text(markdown(results) + "\n")
