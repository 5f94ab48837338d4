"""huey with its SQLite storage: enqueue and process no-op tasks.

Run by benchmarks/peers.py inside benchmarks/.peer-venv. Prints one JSON object.
Storage: SqliteHuey defaults (WAL journal, SQLite's default synchronous=FULL: an acknowledged
enqueue survives power loss, the same promise relaybox makes). Consumer: thread workers, the
kind huey recommends for I/O-bound tasks, with a short idle poll so it never sleeps while
work is queued.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import huey
from huey import SqliteHuey


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="huey-", dir=args.dir))
    queue = SqliteHuey("bench", filename=str(folder / "huey.db"), results=False)
    done = 0
    lock = threading.Lock()
    all_done = threading.Event()

    @queue.task()
    def noop() -> None:
        nonlocal done
        with lock:
            done += 1
            if done == args.tasks:
                all_done.set()

    started = time.perf_counter()
    for _ in range(args.tasks):
        noop()  # one INSERT, committed, per task
    enqueue_seconds = time.perf_counter() - started

    consumer = queue.create_consumer(
        workers=args.workers, worker_type="thread", initial_delay=0.001, max_delay=0.01,
        periodic=False, check_worker_health=False,
    )  # fmt: skip
    consumer._set_signal_handlers = lambda: None  # it runs in a thread here, not in main
    runner = threading.Thread(target=consumer.run, daemon=True)
    cpu_before = time.process_time()  # SQLite runs in this process: all of huey's CPU
    started = time.perf_counter()
    runner.start()
    if not all_done.wait(timeout=600):
        raise SystemExit(f"huey processed {done} of {args.tasks} tasks in 600 s")
    process_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_before
    consumer.stop(graceful=True)
    shutil.rmtree(folder, ignore_errors=True)
    print(
        json.dumps(
            {
                "library": "huey",
                "version": huey.__version__,
                "settings": {
                    "storage": "SqliteHuey (WAL, synchronous=FULL)",
                    "worker_type": "thread",
                    "workers": args.workers,
                    "results": False,
                },
                "jobs": args.tasks,
                "enqueue_per_second": args.tasks / enqueue_seconds,
                "process_per_second": args.tasks / process_seconds,
                "cpu_us_per_job": cpu_seconds * 1e6 / args.tasks,
            }
        )
    )


if __name__ == "__main__":
    main()
