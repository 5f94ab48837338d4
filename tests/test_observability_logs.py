"""Structured logs: one line per worker decision, with the delivery's fields; outage retries.

A real worker (in process) on a real store, with a scripted transport per thread. The JSON log
lines are the contract a log shipper relies on, so the test reads them as JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until
from relaybox.errors import ConfigError
from relaybox.models import Delivery, Part
from relaybox.observability.logs import LogListener, configure_logging
from relaybox.transports.base import (
    AmbiguousSend,
    NotSent,
    OutgoingPart,
    PermanentError,
    RateLimited,
    ReceiverDown,
    SendResult,
    TransientError,
)
from relaybox.transports.memory import MemoryTransport


@contextlib.contextmanager
def restored_root_logging() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    with restored_root_logging():
        configure_logging("json", "debug", stream=stream)
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@dataclass
class Script:
    """Per thread: how the fake receiver answers the n-th send of that thread."""

    calls: dict[str, int]

    def __call__(self, part: OutgoingPart) -> Any:
        n = self.calls[part.thread_id] = self.calls.get(part.thread_id, 0) + 1
        thread = part.thread_id
        if thread == "perm":
            return PermanentError("HTTP 400: no such user")
        if thread == "rl" and n == 1:
            return RateLimited("HTTP 429", retry_after=0.2)
        if thread == "down" and n <= 4:
            return ReceiverDown("could not connect: refused")
        if thread == "bad":
            return TransientError("garbage answer")
        return None


class CannotTell(MemoryTransport):
    """Does not deduplicate and cannot say whether a part arrived: ambiguous sends park."""

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        return None


async def test_every_decision_is_one_line_with_the_delivery_fields(
    store_url: str, json_log: io.StringIO
) -> None:
    # max_attempts=2: "down" fails 4 times and must still be delivered (outages are free),
    # "bad" fails twice and gives up (an answer that will not change keeps its budget).
    rb = relaybox.open(store_url, config=fast_config(max_attempts=2))
    try:
        ids = {}
        for thread in ("ok", "perm", "rl", "down", "bad"):
            result = await rb.enqueue(
                channel="mem",
                thread_id=thread,
                recipient=f"u-{thread}",
                parts=["one", "two"],
                correlation_id=f"corr-{thread}",
            )
            ids[thread] = result.delivery.id
        transport = MemoryTransport(script=Script({}))

        async def all_done() -> bool:
            states = [str((await rb.delivery(i)).status) for i in ids.values()]
            return all(s in ("delivered", "failed") for s in states)

        worker = await run_worker_until(rb, transport, all_done)
        statuses = {t: str((await rb.delivery(i)).status) for t, i in ids.items()}
    finally:
        rb.close()
    assert statuses == {
        "ok": "delivered",
        "perm": "failed",
        "rl": "delivered",
        "down": "delivered",
        "bad": "failed",
    }
    logged = [x for x in lines(json_log) if x["logger"] == "relaybox.worker"]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for line in logged:
        by_event.setdefault(line["event"], []).append(line)

    def of(event: str, thread: str) -> list[dict[str, Any]]:
        return [x for x in by_event.get(event, []) if x.get("thread") == thread]

    # Every delivery line names the delivery, part, thread, channel, correlation id, worker.
    for line in logged:
        if line.get("delivery_id") is not None:
            thread = line["thread"]
            assert line["delivery_id"] == ids[thread]
            assert line["channel"] == "mem"
            assert line["correlation_id"] == f"corr-{thread}"
            assert line["worker"] == worker.worker_id
    sent = of("part_sent", "ok")
    assert [x["part_index"] for x in sent] == [0, 1]
    assert all(x["level"] == "debug" and x["outcome"] == "surfaced" for x in sent)
    assert all(isinstance(x["latency_ms"], float) for x in sent)
    assert of("claimed", "ok") and of("delivered", "ok")

    (gave_up,) = of("gave_up", "perm")
    assert gave_up["level"] == "warning" and gave_up["part_index"] == 0
    assert "permanent error: HTTP 400: no such user" in gave_up["reason"]

    (paused,) = of("paused", "rl")
    assert paused["level"] == "warning" and paused["until"].endswith("Z")

    down = of("retry_scheduled", "down")
    assert len(down) == 4 and all(x["burned"] is False for x in down)
    assert all(x["level"] == "info" and "receiver_down" in x["reason"] for x in down)

    bad_retry = of("retry_scheduled", "bad")
    assert [x["burned"] for x in bad_retry] == [True]
    (bad_gave_up,) = of("gave_up", "bad")
    assert bad_gave_up["reason"].startswith("gave up after 2 attempts: garbage answer")
    assert logged[0]["event"] == "worker_started"
    assert logged[-1]["event"] == "worker_stopped"


async def test_parked_is_a_warning(store_url: str, json_log: io.StringIO) -> None:
    rb = relaybox.open(store_url, config=fast_config())
    try:
        parked = await rb.enqueue(
            channel="mem", thread_id="amb", recipient="u", parts=["x"], correlation_id="c-amb"
        )
        transport = CannotTell(dedup=False, script=lambda p: AmbiguousSend("no answer in 15s"))
        await run_worker_until(rb, transport, lambda: _status(rb, parked.delivery.id, "unknown"))
    finally:
        rb.close()
    (line,) = [x for x in lines(json_log) if x["event"] == "parked"]
    assert line["level"] == "warning" and line["delivery_id"] == parked.delivery.id
    assert "parked for an operator" in line["reason"]


async def _status(rb: relaybox.Relaybox, delivery_id: int, status: str) -> bool:
    return str((await rb.delivery(delivery_id)).status) == status


def test_lease_lost_line_and_nothing_formatted_when_the_level_is_off() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("relaybox.test.levels")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    listener = LogListener("w-1", logger)
    d = _delivery()
    part = Part(index=0, guid="g-0", body="hi")
    logger.setLevel(logging.WARNING)
    built: list[str] = []
    real_emit = listener._emit

    def counting_emit(*args: Any, **kwargs: Any) -> None:
        built.append(args[1])
        real_emit(*args, **kwargs)

    listener._emit = counting_emit  # type: ignore[method-assign]
    listener.claimed(d)
    listener.part_sent(d, part, "surfaced", 0.01)
    listener.retry_scheduled(d, part, 1.0, "x", burned=True)
    assert built == []  # below WARNING: no fields dict, no message string
    listener.lease_lost(d)
    assert built == ["lease_lost"]
    assert "lease on delivery 7 lost" in stream.getvalue()
    logger.removeHandler(handler)


def _delivery() -> Delivery:
    return Delivery(
        id=7, reply_key="k", channel="mem", thread_id="t", recipient="r", resource_id="r",
        correlation_id="c", status=relaybox.models.Status.SENDING, part_count=1, start_index=0,
        attempts=1, max_attempts=8, created_at=0.0, updated_at=0.0, available_at=0.0,
        expires_at=None, finished_at=None, lease_owner="w-1", lease_epoch=1,
        lease_expires_at=None, in_flight_index=None, last_error=None,
    )  # fmt: skip


def test_text_format_is_one_line_with_key_values() -> None:
    stream = io.StringIO()
    with restored_root_logging():
        configure_logging("text", "info", stream=stream)
        LogListener("w-1").gave_up(_delivery(), Part(0, "g", "b"), 'permanent: "bad" user')
    (line,) = stream.getvalue().splitlines()
    assert " WARNING " in line and "delivery 7 failed" in line
    assert "delivery_id=7 part_index=0 parts=1 thread=t channel=mem correlation_id=c" in line
    assert 'failed: permanent: "bad" user' in line and "reason=" not in line  # said once


@pytest.mark.parametrize(
    ("fmt", "level", "message"),
    [
        ("xml", "info", "unknown log format 'xml'; choose one of: text, json"),
        ("json", "loud", "unknown log level 'loud'; choose one of: debug, info, warning, error"),
    ],
)
def test_bad_log_options_are_one_line_errors(fmt: str, level: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configure_logging(fmt, level)
    assert str(caught.value) == message


def test_the_default_handler_follows_sys_stderr_when_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An in-process CLI run swaps sys.stderr and closes the old one; later lines must not
    turn into "--- Logging error ---" reports in someone else's output."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    with restored_root_logging():
        configure_logging("text", "info")
        logging.getLogger("relaybox.test").info("to the first stream")
        assert "to the first stream" in first.getvalue()
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("relaybox.test").info("to the second stream")
        assert "to the second stream" in second.getvalue()
        assert "Logging error" not in second.getvalue()
