"""Regenerate docs/console-overview.png: the console's overview on a seeded demo store.

    .venv/bin/python scripts/console_screenshot.py [--out docs/console-overview.png]

Builds a throw-away SQLite store with an hour of made-up history (three channels, deliveries
finishing over time, a burst of failures, a rate-limited channel, a parked delivery), serves
the real console on a free loopback port and photographs it with the distribution's headless
Chromium (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the browser helper the tests use


def seed(path: Path, now: float) -> None:
    from relaybox.store import open_store

    open_store(f"sqlite:///{path}").close()  # relaybox's schema
    rng = random.Random(12)
    conn = sqlite3.connect(path)
    delivery_id = 0
    for channel, rate in (("sms", 6), ("telegram", 4), ("slack", 2)):
        for minute in range(60):
            busy = 2.0 if 20 <= minute < 30 else 1.0
            for _ in range(int(rate * busy) + rng.randint(0, 2)):
                delivery_id += 1
                created = now - 3600 + minute * 60 + rng.uniform(0, 59)
                latency = rng.lognormvariate(-0.5, 0.6) * (3 if 20 <= minute < 30 else 1)
                status = "delivered"
                if rng.random() < (0.08 if channel == "sms" and 40 <= minute < 46 else 0.01):
                    status = "failed"
                if minute >= 58:
                    status = "queued"
                finished = None if status == "queued" else created + latency
                conn.execute(
                    "INSERT INTO deliveries (id, reply_key, content_hash, channel, thread_id,"
                    " recipient, resource_id, correlation_id, status, part_count, start_index,"
                    " attempts, max_attempts, created_at, updated_at, available_at, finished_at,"
                    " last_error) VALUES (?, ?, 'h', ?, ?, ?, ?, ?, ?, 1, ?, 1, 8, ?, ?, ?, ?, ?)",
                    (
                        delivery_id, f"rk-{delivery_id}", channel, f"chat-{delivery_id % 40}",
                        f"user-{delivery_id % 40}", f"user-{delivery_id % 40}",
                        f"corr-{delivery_id}", status, 1 if status == "delivered" else 0,
                        created, finished or created, created, finished,
                        "gave up after 8 attempts: HTTP 503" if status == "failed" else None,
                    ),
                )  # fmt: skip
                conn.execute(
                    "INSERT INTO delivery_parts (delivery_id, part_index, guid, body)"
                    " VALUES (?, 0, ?, 'hello')",
                    (delivery_id, f"guid-{delivery_id}"),
                )
                if finished is not None:
                    conn.execute(
                        "INSERT INTO delivery_attempts (delivery_id, attempt, part_index, guid,"
                        " worker_id, started_at, latency_ms, outcome, error, correlation_id)"
                        " VALUES (?, 1, 0, ?, 'worker-1', ?, ?, ?, ?, ?)",
                        (
                            delivery_id, f"guid-{delivery_id}", finished, latency * 100,
                            "surfaced" if status == "delivered" else "transient",
                            None if status == "delivered" else "HTTP 503",
                            f"corr-{delivery_id}",
                        ),
                    )  # fmt: skip
                if status == "failed":
                    conn.execute(
                        "INSERT INTO job_failures (queue, job_id, stage, channel, thread_id,"
                        " correlation_id, error_type, message, attempt, terminal, created_at)"
                        " VALUES ('deliveries', ?, 'send', ?, ?, ?, 'TransientError',"
                        " 'HTTP 503 from the gateway', 8, 1, ?)",
                        (str(delivery_id), channel, f"chat-{delivery_id % 40}",
                         f"corr-{delivery_id}", finished),
                    )  # fmt: skip
    conn.execute(
        "UPDATE deliveries SET status = 'unknown', last_error = 'ambiguous send'"
        " WHERE id = (SELECT max(id) FROM deliveries WHERE channel = 'telegram'"
        " AND status = 'delivered')"
    )
    conn.execute(
        "UPDATE deliveries SET available_at = ?, last_error = 'rate_limited: 429 retry after 30s'"
        " WHERE channel = 'slack' AND status = 'queued'",
        (now + 30,),
    )
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "console-overview.png"))
    args = parser.parse_args()

    from _browser import start_chromium
    from relaybox.config import ConsoleConfig, default_config
    from relaybox.console.app import create_app
    from relaybox.console.auth import AuthSettings
    from relaybox.console.server import ConsoleServer, listen
    from relaybox.store import open_store

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.db"
        seed(path, time.time())
        store = open_store(f"sqlite:///{path}")
        app = create_app(store, default_config(), AuthSettings.from_config(ConsoleConfig(), {}))
        sock = listen("127.0.0.1", 0)
        server = ConsoleServer(app, graceful_seconds=1)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        driver = start_chromium(width=1280, height=1040)
        try:
            driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            time.sleep(0.5)  # let the event stream connect (the page shows "live")
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
            server.should_exit = True
            thread.join(timeout=10)
            store.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
