"""Shared helpers for tests that run real worker processes against a real HTTP receiver.

A worker here is ``python -m relaybox worker`` in its own process, configured by a relaybox.toml
whose webhook channel points at a :class:`LoopbackReceiver` in the test process. Each worker
"incarnation" (one process, from start to exit or SIGKILL) gets its own config with an
``X-Relaybox-Worker`` header, so every request on the wire names the process that sent it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import relaybox
from relaybox.models import Attempt, Delivery
from relaybox.testing.loopback import LoopbackReceiver

WORKER_HEADER = "x-relaybox-worker"


def serving_process(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``python -m relaybox <args>`` for a command that serves (``serve``, ``webhooks``), its
    stderr merged into stdout; with the first line it printed (the banner naming its URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "relaybox", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline()


def write_config(
    path: Path,
    *,
    receiver: LoopbackReceiver,
    tag: str = "test",
    lease_seconds: float = 1.0,
    dedup: bool = True,
    reconcile: bool = False,
    poll_interval_seconds: float | None = None,
) -> Path:
    """A relaybox.toml with one webhook channel ``sms`` pointing at ``receiver``."""
    worker = [f"lease_seconds = {lease_seconds}", "shutdown_grace_seconds = 2"]
    if poll_interval_seconds is not None:
        worker.append(f"poll_interval_seconds = {poll_interval_seconds}")
    channel = [
        'transport = "webhook"',
        f'url = "{receiver.url}"',
        f"dedup = {'true' if dedup else 'false'}",
        "backoff_base_seconds = 0.05",
        "backoff_max_seconds = 0.5",
        "max_attempts = 50",
        "send_timeout_seconds = 10",
        f'headers = {{ "X-Relaybox-Worker" = "{tag}" }}',
    ]
    if reconcile:
        channel.append(f'status_url = "{receiver.status_url}"')
    text = "[worker]\n" + "\n".join(worker) + "\n\n[channels.sms]\n" + "\n".join(channel) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class WorkerProcess:
    """One ``relaybox worker`` process (one incarnation)."""

    tag: str
    db_url: str
    config: Path
    log: Path
    concurrency: int
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False
    extra_args: tuple[str, ...] = ()  # more `relaybox worker` options (--log-format json, ...)

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relaybox",
                    "--db",
                    self.db_url,
                    "--config",
                    str(self.config),
                    "worker",
                    "--concurrency",
                    str(self.concurrency),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its log, line by line
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the worker says it is delivering: its signal handlers are in place by then.

        A SIGTERM that arrives while the process is still importing ends it the default way
        (exit status -15), which is right for a process that holds nothing, but is not the
        graceful stop a test wants to check; the worker prints its line only once a SIGTERM
        means a graceful stop, so no extra wait is needed.
        """
        deadline = time.monotonic() + timeout
        while " delivering on " not in self.output():
            assert self.alive(), f"worker {self.tag} exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"worker {self.tag} not ready:\n{self.output()}"
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to release anything, like a power cut."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.killed = True

    def stop(self) -> int:
        """SIGTERM once the worker is up, and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.wait_ready()
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def terminate_backends(admin_url: str, pid: int) -> int:
    """pg_terminate_backend every PostgreSQL connection of process ``pid``; returns how many.

    Connections are found by ``application_name`` (``relaybox-<role>-<pid>``, see
    store/postgres.py), so no other process's connections are touched.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (f"relaybox-%-{pid}",),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


@dataclass
class Plan:
    """The replies a test enqueues: per thread, the texts the user must see, in order."""

    expected: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    replies: int = 0
    parts: int = 0


def enqueue_replies(
    db_url: str,
    config: Path,
    *,
    replies: int,
    threads: int,
    max_parts: int,
    seed: int,
) -> Plan:
    """Enqueue ``replies`` replies of 1..max_parts parts over ``threads`` threads."""
    rng = random.Random(seed)
    plan = Plan()

    async def run() -> None:
        rb = relaybox.open(db_url, config=str(config))
        try:
            for n in range(replies):
                thread = f"chat-{rng.randrange(threads)}"
                texts = [f"r{n}.p{i}" for i in range(rng.randint(1, max_parts))]
                await rb.enqueue(
                    channel="sms",
                    thread_id=thread,
                    recipient=f"user-{thread}",
                    parts=texts,
                    reply_key=f"reply-{n}",
                )
                plan.expected[thread] += texts
                plan.replies += 1
                plan.parts += len(texts)
        finally:
            rb.close()

    asyncio.run(run())
    return plan


@dataclass
class StoredView:
    """What the store says happened: deliveries with their parts, and every attempt row."""

    deliveries: list[Delivery]
    attempts: list[Attempt]

    @property
    def guid_of(self) -> dict[tuple[int, int], str]:
        return {(d.id, p.index): p.guid for d in self.deliveries for p in d.parts}


def read_store(db_url: str) -> StoredView:
    async def run() -> StoredView:
        rb = relaybox.open(db_url, config=relaybox.Config())
        try:
            listed = await rb.deliveries(limit=1_000_000)
            full = [await rb.delivery(d.id) for d in listed]
            attempts = [a for d in listed for a in await rb.attempts(d.id)]
            return StoredView(full, attempts)
        finally:
            rb.close()

    return asyncio.run(run())


def check_user_view(rx: LoopbackReceiver, plan: Plan) -> None:
    """The user saw every part exactly once, each thread in enqueue order."""
    for thread, texts in plan.expected.items():
        assert rx.texts(thread) == texts, f"thread {thread}"
    assert len(rx.seen) == plan.parts
    assert len({body["guid"] for body in rx.seen}) == plan.parts


def check_wire_guids(rx: LoopbackReceiver, stored: StoredView) -> Counter[str]:
    """Every request on the wire carries the GUID stored for its part at enqueue, also resends.

    Returns how many times each GUID was on the wire.
    """
    guid_of = stored.guid_of
    body_of = {(d.id, p.index): p.body for d in stored.deliveries for p in d.parts}
    for body, headers in zip(rx.wire, rx.wire_headers, strict=True):
        key = (int(body["delivery_id"]), int(body["index"]))
        assert body["guid"] == guid_of[key], f"part {key} went out under another GUID"
        assert headers["idempotency-key"] == body["guid"]
        assert body["text"] == body_of[key]
    return Counter(body["guid"] for body in rx.wire)


def worker_pid(attempt: Attempt) -> int:
    """The process id inside a worker id (``host:pid:suffix``)."""
    return int(attempt.worker_id.rsplit(":", 2)[-2])


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def summarize(title: str, counts: dict[str, Any]) -> str:
    line = ", ".join(f"{key}={value}" for key, value in counts.items())
    text = f"{title}: {line}"
    print(text)
    return text
