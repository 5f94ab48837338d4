"""The supervised service base and the clock seam: a loop that raises is logged and restarted."""

from __future__ import annotations

import asyncio
import logging

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until
from relaybox.clock import ManualClock, SystemClock
from relaybox.transports.memory import MemoryTransport
from relaybox.worker import expirer
from relaybox.worker.service import Service, ServiceGroup, ServiceState


async def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=100.0)
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(10)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    await clock.wait_for_sleepers(1)
    clock.advance(9.5)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(0.5)
    await task
    assert woke == [110.0]
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_manual_clock_wait_returns_early_on_the_event() -> None:
    clock = ManualClock()
    event = asyncio.Event()
    waiting = asyncio.create_task(clock.wait(event, 60))
    await clock.wait_for_sleepers(1)
    event.set()
    assert await waiting is True
    assert await clock.wait(asyncio.Event(), 0) is False


async def test_system_clock_wait_times_out() -> None:
    assert await SystemClock().wait(asyncio.Event(), 0.001) is False


async def test_a_periodic_service_that_raises_is_logged_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"boom {calls}")

    svc = Service("flaky", flaky, every=10.0, clock=clock, min_backoff=1.0)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="relaybox.worker"):
        task = asyncio.create_task(svc.run(stop))
        await clock.wait_for_sleepers(1)
        assert calls == 1 and svc.health().state == ServiceState.BACKING_OFF
        assert svc.health().consecutive_failures == 1 and svc.backoff() == 1.0
        clock.advance(1.0)  # the first backoff
        await _until(lambda: calls == 2 and clock.sleepers() == 1)
        assert svc.backoff() == 2.0  # doubles per consecutive failure
        clock.advance(2.0)
        await _until(lambda: calls == 3 and clock.sleepers() == 1)
        health = svc.health()
        assert health.healthy and health.failures == 2 and health.runs == 3
        assert health.last_ok_at == clock.now() and health.last_error == "RuntimeError: boom 2"
        clock.advance(9.0)
        await asyncio.sleep(0)
        assert calls == 3  # back on its normal interval
        clock.advance(1.0)
        await _until(lambda: calls == 4)
        stop.set()
        await task
    assert svc.health().state == ServiceState.STOPPED
    failed = [r.getMessage() for r in caplog.records if "service flaky failed" in r.getMessage()]
    assert failed == [
        "service flaky failed (RuntimeError: boom 1); restarting in 1.00s",
        "service flaky failed (RuntimeError: boom 2); restarting in 2.00s",
    ]


async def test_backoff_of_a_periodic_service_never_exceeds_its_interval() -> None:
    clock = ManualClock()

    async def broken() -> None:
        raise OSError("down")

    svc = Service("hb", broken, every=3.0, clock=clock, min_backoff=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    for _ in range(5):
        await clock.wait_for_sleepers(1)
        clock.advance(svc.backoff())
    await clock.wait_for_sleepers(1)
    assert svc.health().consecutive_failures == 6 and svc.backoff() == 3.0
    stop.set()
    await task


async def test_a_continuous_service_that_ends_is_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    starts = 0
    forever = asyncio.Event()

    async def listener() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise ConnectionError("lost")
        await forever.wait()

    svc = Service("listener", listener, every=None, clock=clock, min_backoff=0.5)
    group = ServiceGroup([svc])
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="relaybox.worker"):
        group.start(stop)
        await clock.wait_for_sleepers(1)
        clock.advance(0.5)
        await _until(lambda: starts == 2)
        assert group.health()[0].state == ServiceState.RUNNING
        stop.set()
        await group.close()
    assert "service listener failed (ConnectionError: lost)" in caplog.text
    assert group.health()[0].state == ServiceState.STOPPED


def test_a_service_refuses_a_zero_interval_and_a_group_duplicate_names() -> None:
    async def body() -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        Service("x", body, every=0)
    group = ServiceGroup([Service("x", body, every=1)])
    with pytest.raises(ValueError, match="already registered"):
        group.add(Service("x", body, every=2))


async def test_a_worker_whose_expirer_raises_keeps_it_running_and_delivering(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rb = relaybox.open(sqlite_url, config=fast_config())
    passes = 0

    async def broken_then_fine(*args: object, **kwargs: object) -> int:
        nonlocal passes
        passes += 1
        if passes <= 2:
            raise RuntimeError("expirer exploded")
        return 0

    monkeypatch.setattr(expirer, "expire_once", broken_then_fine)
    transport = MemoryTransport()
    await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["hi"])
    with caplog.at_level(logging.WARNING, logger="relaybox.worker"):
        worker = await run_worker_until(
            rb, transport, lambda: passes >= 3 and transport.texts() == ["hi"]
        )
    names = {h.name for h in worker.services.health()}
    assert {"heartbeat", "expirer", "pruner", "wakeups"} <= names
    assert caplog.text.count("service expirer failed (RuntimeError: expirer exploded)") == 2
    assert worker.services.get("expirer").health().failures == 2
    rb.close()


async def _until(condition: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)
