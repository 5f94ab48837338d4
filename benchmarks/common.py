"""Shared helpers: statistics, store URLs, fresh schemas, subprocess workers."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
PG_URL = os.environ.get("RELAYBOX_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PYTHON = sys.executable


def summary(samples: list[float], digits: int = 1) -> dict[str, Any]:
    """Median with min and max, the way every figure in the report is given."""
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "runs": len(samples),
        "samples": [round(s, digits) for s in samples],
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
    import sqlite3

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version,
        "pg_synchronous_commit": sync,
        "disk_dir": str(tempfile.gettempdir()),
    }


# -- stores --------------------------------------------------------------------------------


@dataclass
class BenchStore:
    """A fresh, empty relaybox store: a SQLite file or a PostgreSQL schema of its own."""

    kind: str  # "sqlite" | "postgres"
    url: str
    cleanup: Callable[[], None]


def work_dir() -> Path:
    """Scratch files live on the same disk as the repository (what a user's store would use)."""
    path = BENCH_DIR / ".work"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def fresh_store(kind: str) -> Iterator[BenchStore]:
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="rb-", dir=work_dir()))
        path = folder / "bench.db"
        store = BenchStore(kind, f"sqlite:///{path}", lambda: _rmtree(folder))
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        store = BenchStore(kind, url, lambda: drop_schema(schema))
    try:
        yield store
    finally:
        store.cleanup()


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _rmtree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# -- worker processes ----------------------------------------------------------------------


def write_config(
    folder: Path, *, channel: str = "bench", transport: str = "noop", **worker: Any
) -> Path:
    """A relaybox.toml with one channel and the given ``[worker]`` settings."""
    lines = ["[worker]"]
    lines += [f"{key} = {value!r}" for key, value in worker.items()]
    lines += ["", f"[channels.{channel}]", f'transport = "{transport}"', "max_age_seconds = 0"]
    path = folder / f"relaybox-{uuid.uuid4().hex[:6]}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_worker(
    url: str, config: Path, *, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """A real ``relaybox worker`` process, exactly as a user starts one."""
    cmd = [PYTHON, "-m", "relaybox", "--db", url, "--config", str(config), "worker", *(extra or [])]
    # Its log goes to a file: a pipe nobody reads would block the worker once it filled up.
    log_file = work_dir() / f"worker-{uuid.uuid4().hex[:8]}.log"
    with log_file.open("wb") as log_out:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_out)
    profile_dir = os.environ.get("RELAYBOX_BENCH_PROFILE")
    if profile_dir:  # py-spy, installed in the venv for profiling only (not a dependency)
        out = Path(profile_dir) / f"worker-{proc.pid}.txt"
        spy = str(Path(PYTHON).parent / "py-spy")
        _spies[proc.pid] = subprocess.Popen(
            [
                spy,
                "record",
                "--format",
                "raw",
                "--threads",
                "-r",
                "200",
                "-o",
                str(out),
                "--pid",
                str(proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return proc


_spies: dict[int, subprocess.Popen[bytes]] = {}


def stop_worker(proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    spy = _spies.pop(proc.pid, None)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.01) -> float:
    """Poll ``check`` until true; return when it became true (monotonic). Raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:g}s")
        time.sleep(interval)


# -- where the CPU goes ----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def postgres_pids() -> list[int]:
    """Every process of the local PostgreSQL server (backends, WAL writer, checkpointer)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
    return pids


def backend_pids(client_pids: list[int]) -> list[int]:
    """The PostgreSQL backends serving the given relaybox processes (by application_name).

    Every relaybox connection is named ``relaybox-<role>-<pid>`` (store/postgres.py), so the
    server processes working for one worker are found without counting other clients of a
    shared server (other test suites, other benchmarks) into its CPU.
    """
    names = [f"%-{pid}" for pid in client_pids]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name LIKE 'relaybox-%%' AND application_name LIKE ANY(%s)",
            (names,),
        ).fetchall()
    return [int(r[0]) for r in rows]


class CpuMeter:
    """CPU seconds spent by groups of processes between start() and stop(), run by run.

    Each group's pids are listed at start(); a process that exits meanwhile counts what it
    had used when last seen (0 if it is gone: keep groups to processes that outlive a run).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}
        self.runs: list[dict[str, float]] = []

    def start(self) -> None:
        self._start = {g: {p: cpu_seconds(p) for p in f()} for g, f in self.groups.items()}

    def stop(self) -> dict[str, float]:
        """Add this run's CPU seconds per group; returns them."""
        run: dict[str, float] = {}
        for group, before in self._start.items():
            run[group] = sum(max(0.0, cpu_seconds(pid) - t) for pid, t in before.items())
            self.used[group] = self.used.get(group, 0.0) + run[group]
        self.runs.append(run)
        return run
