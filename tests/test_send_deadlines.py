"""worker/deadlines.py: send timeouts from one timer behave like asyncio.timeout."""

from __future__ import annotations

import asyncio

import pytest

from relaybox.worker.deadlines import SendDeadlines


def test_a_send_past_its_deadline_raises_timeout_error_within_one_tick() -> None:
    async def main() -> float:
        deadlines = SendDeadlines(tick=0.02)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with deadlines.within(0.1):
                await asyncio.sleep(10)
        assert deadlines.waiting == 0
        return loop.time() - started

    took = asyncio.run(main())
    assert 0.1 <= took < 1.0


def test_a_send_that_answers_in_time_is_untouched_and_the_timer_stops() -> None:
    async def main() -> None:
        deadlines = SendDeadlines(tick=0.01)
        async with deadlines.within(5):
            await asyncio.sleep(0.03)  # several ticks pass while it waits
        assert deadlines.waiting == 0
        await asyncio.sleep(0.05)
        assert deadlines._timer is None  # nothing waits: no timer keeps the loop busy
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(main())


def test_only_the_sends_past_their_own_deadline_time_out() -> None:
    async def send(deadlines: SendDeadlines, limit: float, takes: float) -> str:
        try:
            async with deadlines.within(limit):
                await asyncio.sleep(takes)
        except TimeoutError:
            return "timeout"
        return "sent"

    async def main() -> list[str]:
        deadlines = SendDeadlines(tick=0.01)
        return await asyncio.gather(
            send(deadlines, 0.05, 5), send(deadlines, 5, 0.1), send(deadlines, 0.05, 0.0),
            send(deadlines, 0.2, 5),
        )  # fmt: skip

    assert asyncio.run(main()) == ["timeout", "sent", "sent", "timeout"]


def test_a_shutdown_cancel_is_not_turned_into_a_timeout() -> None:
    async def main() -> None:
        deadlines = SendDeadlines(tick=0.01)

        async def send() -> None:
            async with deadlines.within(5):
                await asyncio.sleep(10)

        task = asyncio.create_task(send())
        await asyncio.sleep(0.03)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert deadlines.waiting == 0

    asyncio.run(main())


def test_a_shutdown_cancel_that_meets_a_passed_deadline_still_cancels() -> None:
    async def main() -> None:
        deadlines = SendDeadlines(tick=0.01)
        entered = asyncio.Event()

        async def send() -> None:
            async with deadlines.within(0.0):
                entered.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(send())
        await entered.wait()
        task.cancel()  # the shutdown's cancel comes first; the deadline's tick follows
        await asyncio.sleep(0.03)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_send_that_swallows_the_cancel_keeps_its_result() -> None:
    async def main() -> tuple[bool, str]:
        deadlines = SendDeadlines(tick=0.01)
        ignored = False
        async with deadlines.within(0.02):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                ignored = True  # a transport that ignores cancellation and answers anyway
            result = "answered"
        # No TimeoutError, and no cancellation left pending on the task.
        await asyncio.sleep(0)
        return ignored, result

    assert asyncio.run(main()) == (True, "answered")


def test_a_bad_tick_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tick must be greater than 0"):
        SendDeadlines(tick=0)
