"""Several worker processes on one SQLite file share the work safely (no kills here)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import relaybox
from relaybox.testing.loopback import LoopbackReceiver


def test_three_worker_processes_on_one_sqlite_file(tmp_path: Path):
    db = f"sqlite:///{tmp_path}/shared.db"
    replies, threads, parts = 150, 30, 3
    with LoopbackReceiver() as rx:
        config = tmp_path / "relaybox.toml"
        config.write_text(
            "[worker]\nlease_seconds = 2\npoll_interval_seconds = 0.02\n\n"
            f'[channels.sms]\ntransport = "webhook"\nurl = "{rx.url}"\n',
            encoding="utf-8",
        )
        rb = relaybox.open(db, config=str(config))
        expected: dict[str, list[str]] = defaultdict(list)

        async def enqueue_all() -> None:
            for n in range(replies):
                thread = f"chat-{n % threads}"
                texts = [f"{n}.{i}" for i in range(parts)]
                await rb.enqueue(channel="sms", thread_id=thread, recipient="u", parts=texts)
                expected[thread] += texts

        asyncio.run(enqueue_all())
        rb.close()
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relaybox",
                    "--db",
                    db,
                    "--config",
                    str(config),
                    "worker",
                    "--concurrency",
                    "8",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(3)
        ]
        try:
            assert rx.wait_until_seen(replies * parts, timeout=60), len(rx.seen)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            errors = [w.communicate(timeout=30)[1].decode() for w in workers]
        assert [w.returncode for w in workers] == [0, 0, 0], errors
        assert rx.duplicates_on_wire == 0 and len(rx.wire) == replies * parts
        for thread, texts in expected.items():
            assert rx.texts(thread) == texts
    rb = relaybox.open(db, config=str(config))
    try:
        done = asyncio.run(rb.deliveries(limit=1000))
        assert {str(d.status) for d in done} == {"delivered"}
        attempts = [a for d in done for a in asyncio.run(rb.attempts(d.id))]
        assert len(attempts) == replies * parts
        assert len({a.worker_id for a in attempts}) == 3, "every worker should have taken a share"
    finally:
        rb.close()
