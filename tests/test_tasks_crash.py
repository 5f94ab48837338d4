"""Real processes, real SIGKILL: task bodies and the supervising worker die; users still hear.

Two ``relaybox worker`` processes supervise one store; two agent processes run tasks with
``rb.tasks.run``. We SIGKILL one agent process mid-task (its tasks stop beating) and then the
worker that holds the supervisor lease. Every task must still end in a terminal state whose
message to the user was delivered, and no task may be nudged twice in one progress window.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import relaybox
from relaybox.models import Status
from relaybox.store import Tx
from relaybox.tasks import EventKind, TaskState

pytestmark = pytest.mark.slow

TOML = """
[worker]
lease_seconds = 1.0
poll_interval_seconds = 0.02
shutdown_grace_seconds = 1

[channels.chat]
transport = "noop"

[tasks]
tick_seconds = 0.1
ack_within_seconds = 0.5
progress_every_seconds = 1.0
finish_within_seconds = 8
liveness_seconds = 1.5
"""

AGENT = """
import asyncio, sys
import relaybox
from relaybox.tasks import Conversation

async def body(handle, kind):
    await handle.ack("on it")
    if kind == "quick":
        await handle.progress("half way")
        await asyncio.sleep(0.3)
        return ["here you are"]
    if kind == "chatty":  # reports progress until the finish deadline ends it
        while True:
            await asyncio.sleep(0.4)
            await handle.progress(data={"tick": 1})
    await asyncio.sleep(3600)  # silent: nudged, then timed out (or interrupted if killed)

async def main():
    rb = relaybox.open(sys.argv[1], config=sys.argv[2])
    name = sys.argv[3]
    kinds = ["quick", "chatty", "silent", "silent"]
    runs = [
        rb.tasks.run(Conversation("chat", f"{name}-{i}", "user"), f"{name} {kind} {i}",
                     lambda h, kind=kind: body(h, kind))
        for i, kind in enumerate(kinds)
    ]
    print("running", flush=True)
    await asyncio.gather(*runs)
    rb.close()

asyncio.run(main())
"""


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _supervisor_holder(tx: Tx) -> str | None:
    row = tx.fetch_one("task_supervision")
    return None if row is None or row["lease_until"] < time.time() else row["holder"]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_of_task_processes_and_of_the_supervisor_still_tells_every_user(
    store_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "relaybox.toml"
    config.write_text(TOML)
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    rb = relaybox.open(store_url, config=str(config))  # migrates the store
    procs: list[subprocess.Popen[bytes]] = []
    try:
        workers = [
            _spawn(["-m", "relaybox", "--db", store_url, "--config", str(config), "worker"],
                   tmp_path / f"worker-{n}.log")
            for n in range(2)
        ]  # fmt: skip
        procs += workers
        agents = [
            _spawn([str(agent), store_url, str(config), name], tmp_path / f"{name}.log")
            for name in ("alpha", "beta")
        ]
        procs += agents
        _wait(lambda: len(rb.store.read_sync(_all_tasks)) == 8, 30, "8 tasks started")
        _wait(lambda: rb.store.read_sync(_supervisor_holder) is not None, 30, "a supervisor")
        time.sleep(0.6)  # let the quick tasks finish and acks go out
        agents[1].send_signal(signal.SIGKILL)  # beta's bodies die: they stop beating
        agents[1].wait()
        holder = rb.store.read_sync(_supervisor_holder)
        assert holder is not None
        victim = next(w for w in workers if f":{w.pid}:" in holder)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        _wait(
            lambda: (rb.store.read_sync(_supervisor_holder) or holder) != holder,
            10,
            "another worker taking over supervision",
        )
        assert time.monotonic() - killed_at < 3.0  # within the lease (1 s) plus a tick or two
        _wait(lambda: _all_ended_and_told(rb), 40, "every task ended and its user told")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    tasks = rb.store.read_sync(_all_tasks)
    states = {t.summary: t.state for t in tasks}
    assert states["alpha quick 0"] == TaskState.DONE
    assert states["alpha chatty 1"] == TaskState.TIMED_OUT
    assert {states["alpha silent 2"], states["alpha silent 3"]} == {TaskState.TIMED_OUT}
    beta = [t for t in tasks if t.summary.startswith("beta") and "quick" not in t.summary]
    assert {t.state for t in beta} == {TaskState.FAILED}
    assert {t.error_type for t in beta} == {"TaskInterrupted"}
    for task in tasks:
        events = rb.store.read_sync(_events(task.id))
        nudges = [e.at for e in events if e.kind == EventKind.NUDGE]
        assert len(nudges) == task.nudges
        assert all(b - a >= task.progress_every for a, b in itertools.pairwise(nudges))
        assert [e.seq for e in events] == list(range(1, task.last_seq + 1))
    rb.close()


def _all_tasks(tx: Tx) -> list:
    from relaybox.tasks.inspect import list_tasks

    return list_tasks(now=time.time(), limit=100)(tx)


def _events(task_id: int):
    from relaybox.tasks.inspect import events

    def unit(tx: Tx) -> list:
        return events(task_id, limit=10_000)(tx).events

    return unit


def _all_ended_and_told(rb: relaybox.Relaybox) -> bool:
    tasks = rb.store.read_sync(_all_tasks)
    if len(tasks) != 8 or any(not t.state.terminal for t in tasks):
        return False
    for task in tasks:
        told = (
            task.result_delivery_id
            if task.state == TaskState.DONE
            else (task.notice_delivery_id or task.result_delivery_id)
        )
        if told is None:
            return False
        if rb.store.read_sync(_delivery_status(told)) != Status.DELIVERED:
            return False
    return True


def _delivery_status(delivery_id: int):
    def unit(tx: Tx) -> str | None:
        row = tx.fetch_one("delivery_by_id", {"id": delivery_id})
        return None if row is None else str(row["status"])

    return unit
