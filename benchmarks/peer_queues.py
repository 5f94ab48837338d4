"""Peer queues on the same machine and PostgreSQL server: huey, pgqueuer, procrastinate.

Each library runs in ``benchmarks/.peer-venv`` (created here, pinned by
``benchmarks/peers/requirements.txt``) through a small script per library that prints JSON.
Every configuration is run several times; the suite keeps the median and min-max, and the
best configuration of each library is what relaybox is compared with.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, PG_URL, summary, work_dir

VENV = BENCH_DIR / ".peer-venv"
PEERS = BENCH_DIR / "peers"
REQUIREMENTS = PEERS / "requirements.txt"


def peer_python() -> Path:
    """The peer venv's interpreter, creating and filling the venv on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print("  creating benchmarks/.peer-venv (pip install from PyPI) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def _run(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [str(peer_python()), str(PEERS / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _repeat(script: str, args: list[str], runs: int, timeout: float) -> dict[str, Any]:
    results = [_run(script, args, timeout) for _ in range(runs)]
    cpu = [r["cpu_us_per_job"] for r in results if "cpu_us_per_job" in r]
    return {
        "cpu_us_per_job": summary(cpu, 1) if cpu else None,
        "cpu_us_per_job_by_group": [r.get("cpu_us_per_job_by_group") for r in results],
        "library": results[0]["library"],
        "version": results[0]["version"],
        "settings": results[0]["settings"],
        "jobs": results[0]["jobs"],
        "enqueue_per_second": summary([r["enqueue_per_second"] for r in results], 0),
        "process_per_second": summary([r["process_per_second"] for r in results], 0),
    }


def _pg_args() -> list[str]:
    return ["--dsn", PG_URL, "--schema", f"peer_{uuid.uuid4().hex[:10]}"]


def measure(runs: int = 3) -> dict[str, Any]:
    """Every peer configuration; returns {library: [configuration results]}."""
    configs: dict[str, list[dict[str, Any]]] = {"huey": [], "pgqueuer": [], "procrastinate": []}
    for workers in (1, 4):
        args = ["--tasks", "8000", "--workers", str(workers), "--dir", str(work_dir())]
        configs["huey"].append(_repeat("huey_bench.py", args, runs, 300))
    for instances, batch in ((1, 10), (5, 10), (5, 50)):
        args = [*_pg_args(), "--jobs", "20000", "--instances", str(instances)]
        args += ["--batch-size", str(batch)]
        configs["pgqueuer"].append(_repeat("pgqueuer_bench.py", args, runs, 300))
    args = [*_pg_args(), "--jobs", "1500", "--concurrency", "10"]
    configs["procrastinate"].append(_repeat("procrastinate_bench.py", args, runs, 300))
    return configs


def best(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration with the highest median processing rate."""
    return max(configs, key=lambda c: c["process_per_second"]["median"])


if __name__ == "__main__":
    print(json.dumps(measure(runs=1), indent=2))
