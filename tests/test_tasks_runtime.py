"""The run helper (liveness, cancel hook), the supervisor lease, settings reload, in a worker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

import relaybox
from _task_helpers import CONV, TaskRig
from relaybox.tasks import Contract, TaskState
from relaybox.tasks.api import TaskHandle
from relaybox.tasks.settings import LiveSettings
from relaybox.transports.memory import MemoryTransport


@pytest.fixture
async def rig(store_url: str):
    rig = TaskRig(store_url)
    yield rig
    rig.close()


async def test_run_completes_with_what_the_body_returns(rig: TaskRig) -> None:
    async def body(task: TaskHandle) -> list[str]:
        await task.ack("Searching")
        await task.progress(data={"step": 1})
        return ["Found it."]

    task = await rig.tasks.run(CONV, "Search", body)
    assert task.state == TaskState.FINISHING and task.runner is not None
    assert task.liveness_due is not None  # the helper beat at least once
    await rig.deliver()
    await rig.tick()
    assert (await rig.tasks.get(task.id)).state == TaskState.DONE
    assert rig.seen() == ["Searching", "Found it."]


async def test_run_fails_the_task_with_the_user_text_when_the_body_raises(rig: TaskRig) -> None:
    async def body(task: TaskHandle) -> list[str]:
        raise ConnectionError("airline API down")

    task = await rig.tasks.run(CONV, "Book", body, failure_text="Sorry, booking failed: {summary}")
    assert task.state == TaskState.FINISHING and task.error_type == "ConnectionError"
    await rig.deliver()
    await rig.tick()
    assert (await rig.tasks.get(task.id)).state == TaskState.FAILED
    assert rig.seen() == ["Sorry, booking failed: Book"]
    assert [f.error_type for f in await rig.rb.failures()] == ["ConnectionError"]


async def test_run_cancels_the_body_and_calls_the_hook_when_cancelled_elsewhere(
    rig: TaskRig,
) -> None:
    started, hooked = asyncio.Event(), []
    body_cancelled = asyncio.Event()

    async def body(task: TaskHandle) -> list[str]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            body_cancelled.set()
            raise
        return []

    run = asyncio.create_task(
        rig.tasks.run(CONV, "Forever", body, on_cancel=lambda t: hooked.append(t.state))
    )
    await started.wait()
    task_id = (await rig.tasks.list())[0].id
    outcome = await rig.tasks.cancel(task_id, "No longer needed")
    assert outcome.result == "cancelled"
    await rig.clock.wait_for_sleepers(1)
    rig.clock.advance(20 / 3)  # the next liveness beat sees the cancel
    task = await run
    assert task.state == TaskState.CANCELLED and body_cancelled.is_set()
    assert hooked == [TaskState.CANCELLED]


async def test_a_body_that_stops_beating_is_failed_and_the_user_told(rig: TaskRig) -> None:
    async def body(task: TaskHandle) -> list[str]:
        await task.ack("on it")
        await asyncio.Event().wait()
        return []

    run = asyncio.create_task(rig.tasks.run(CONV, "Crashy", body))
    await rig.clock.wait_for_sleepers(1)
    run.cancel()  # the process running the body is gone: no more beats
    await asyncio.gather(run, return_exceptions=True)
    rig.clock.advance(19)
    assert [a for _i, a in (await rig.tick()).acted] == ["ack_pending"]
    rig.clock.advance(2)  # liveness (20 s) lapsed
    assert [a for _i, a in (await rig.tick()).acted] == ["interrupted"]
    task = (await rig.tasks.list())[0]
    assert task.state == TaskState.FAILED and task.error_type == "TaskInterrupted"
    await rig.deliver()
    assert rig.seen() == ["on it", "Sorry, the work on this stopped unexpectedly: Crashy"]


async def test_exactly_one_supervisor_acts_and_another_takes_over_when_its_lease_lapses(
    rig: TaskRig,
) -> None:
    other = rig.new_supervisor("sup-2")
    handle = await rig.tasks.start(CONV, "Watched", contract=Contract(progress_every=10))
    await handle.ack("on it")
    rig.clock.advance(10)
    # sup-1 takes the lease first (which of two fresh supervisors wins a race is not the point);
    # then both tick at once: only the holder acts, and nothing is done twice.
    first = await rig.tick()
    assert first.leader
    reports = await asyncio.gather(rig.tick(), other.tick_once(), rig.tick(), other.tick_once())
    assert [r.leader for r in reports] == [True, False, True, False]
    assert len(first.acted) + sum(len(r.acted) for r in reports) == 1  # one nudge, by the leader
    rig.clock.advance(rig.supervisor.lease() + 0.1)  # sup-1 died: it stops ticking
    report = await other.tick_once()
    assert report.leader and report.acted == []
    rig.clock.advance(10)
    assert (await other.tick_once()).acted == [(handle.id, "nudge")]
    assert not (await rig.tick()).leader
    assert (await handle.refresh()).nudges == 2


async def test_contract_defaults_reload_and_an_invalid_file_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "relaybox.toml"
    path.write_text("[channels.mem]\ntransport = 'memory'\n[tasks]\nack_within_seconds = 5\n")
    settings = LiveSettings(relaybox.load_config(path))
    assert settings.current.defaults.ack_within_seconds == 5
    path.write_text("[channels.mem]\ntransport = 'memory'\n[tasks]\nack_within_seconds = 2\n")
    assert settings.reload_if_changed()
    assert settings.current.defaults.ack_within_seconds == 2
    assert not settings.reload_if_changed()  # nothing moved
    bad_lines = (
        "ack_within_seconds = 0",
        "ack_within_seconds = -1",
        "ack_wthin_seconds = 3",
        "tick_seconds = 0",
        "finish_within_seconds = 1e12",
    )
    for bad in bad_lines:
        caplog.clear()
        path.write_text(f"[channels.mem]\ntransport = 'memory'\n[tasks]\n{bad}\n")
        with caplog.at_level(logging.INFO, logger="relaybox.tasks"):
            assert not settings.reload_if_changed()
        assert len(caplog.records) == 1
        assert caplog.records[0].getMessage().startswith("settings reload refused, old settings")
        assert settings.current.defaults.ack_within_seconds == 2


async def test_new_defaults_apply_to_tasks_started_afterwards(store_url: str, tmp_path: Path):
    path = tmp_path / "relaybox.toml"
    path.write_text("[channels.mem]\ntransport = 'memory'\n[tasks]\nprogress_every_seconds = 30\n")
    rb = relaybox.open(store_url, config=relaybox.load_config(path))
    try:
        before = await rb.tasks.start(CONV, "Before")
        path.write_text(
            "[channels.mem]\ntransport = 'memory'\n[tasks]\nprogress_every_seconds = 7\n"
        )
        assert rb.task_settings.reload()
        after = await rb.tasks.start(CONV, "After")
        assert (await before.refresh()).progress_every == 30
        assert (await after.refresh()).progress_every == 7
    finally:
        rb.close()


async def test_a_worker_supervises_tasks_and_reloads_on_sighup(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "relaybox.toml"
    body = (
        "[worker]\nlease_seconds = 1.0\npoll_interval_seconds = 0.01\n"
        "[channels.mem]\ntransport = 'memory'\n"
        "[tasks]\ntick_seconds = 0.02\nack_within_seconds = 0.1\n"
    )
    path.write_text(body)
    config = relaybox.load_config(path)
    rb = relaybox.open(sqlite_url, config=config)
    transport = MemoryTransport()
    worker = relaybox.Worker(rb.store, config, transports={"mem": transport})
    run = asyncio.create_task(worker.run(install_signal_handlers=True))
    try:
        handle = await rb.tasks.start(CONV, "Auto acked")
        deadline = time.monotonic() + 10
        while (await handle.refresh()).acked_at is None:
            assert time.monotonic() < deadline, "no automatic ack"
            await asyncio.sleep(0.02)
        assert transport.texts() == ["On it: Auto acked"]
        path.write_text(body.replace("ack_within_seconds = 0.1", "ack_within_seconds = 9"))
        os.kill(os.getpid(), signal.SIGHUP)
        while worker.task_settings.reloads < 1:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            await asyncio.sleep(0.01)
        assert worker.task_settings.current.defaults.ack_within_seconds == 9
        with caplog.at_level(logging.ERROR, logger="relaybox.tasks"):
            path.write_text(body.replace("ack_within_seconds = 0.1", "ack_within_seconds = 0"))
            os.kill(os.getpid(), signal.SIGHUP)
            while "settings reload refused" not in caplog.text:
                assert time.monotonic() < deadline, "invalid file not refused"
                await asyncio.sleep(0.01)
        assert worker.task_settings.current.defaults.ack_within_seconds == 9
        assert {h.name for h in worker.services.health()} >= {"task-supervisor", "settings-watch"}
    finally:
        worker.stop()
        await run
        rb.close()


async def test_run_fails_a_body_that_returns_without_finishing(rig: TaskRig) -> None:
    async def body(task: TaskHandle) -> None:
        await task.ack("on it")

    task = await rig.tasks.run(CONV, "Forgetful", body)
    assert task.state == TaskState.FINISHING and task.error_type == "InvalidTask"
    from relaybox.errors import InvalidTask

    with pytest.raises(InvalidTask, match="failure_text may only use"):
        await rig.tasks.run(CONV, "Bad template", body, failure_text="{oops}")
    assert len(await rig.tasks.list()) == 1  # the bad template was refused before starting


async def test_contract_defaults_per_channel(sqlite_url: str, tmp_path: Path) -> None:
    from relaybox.errors import ConfigError

    path = tmp_path / "relaybox.toml"
    path.write_text(
        "[channels.mem]\ntransport = 'memory'\n[channels.other]\ntransport = 'memory'\n"
        "[tasks]\nprogress_every_seconds = 30\nnudge_text = 'Still on it'\n"
        "[tasks.channels.mem]\nprogress_every_seconds = 7\n"
    )
    rb = relaybox.open(sqlite_url, config=relaybox.load_config(path))
    try:
        on_mem = await (await rb.tasks.start(CONV, "mem task")).refresh()
        other = CONV.__class__("other", "t", "r")
        on_other = await (await rb.tasks.start(other, "other task")).refresh()
        assert (on_mem.progress_every, on_other.progress_every) == (7, 30)
        assert on_mem.nudge_text == on_other.nudge_text == "Still on it"  # inherited
    finally:
        rb.close()
    path.write_text("[channels.mem]\ntransport = 'memory'\n[tasks.channels.nope]\nack_text = 'x'\n")
    with pytest.raises(ConfigError, match=r"tasks\.channels\.nope names no configured channel"):
        relaybox.load_config(path)
    path.write_text("[channels.mem]\ntransport = 'memory'\n[tasks]\nack_text = 'On it {who}'\n")
    with pytest.raises(ConfigError, match="may only use"):
        relaybox.load_config(path)


async def test_the_supervisor_skips_a_task_an_agent_is_changing(pg_url: str) -> None:
    """It never waits on an agent's row lock (so it is never part of a lock cycle)."""
    import psycopg

    rig = TaskRig(pg_url)
    try:
        handle = await rig.tasks.start(CONV, "Busy row", contract=Contract(progress_every=10))
        await handle.ack("on it")
        rig.clock.advance(10)
        with psycopg.connect(pg_url) as agent:  # an agent's open transaction holds the row
            agent.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (handle.id,))
            report = await asyncio.wait_for(rig.tick(), 5)
            assert report.leader and report.acted == []
            agent.rollback()
        assert (await rig.tick()).acted == [(handle.id, "nudge")]
    finally:
        rig.close()
