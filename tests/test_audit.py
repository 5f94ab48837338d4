"""The failure audit log (spec C3), on SQLite and PostgreSQL: recording, truncation, the log
fallback when the store cannot take a record, and the delivery engine's failures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until, status_is
from relaybox.audit import FailureAuditor, FailureFilter, FailureReport, record_job_failure
from relaybox.audit.payload import TRUNCATION_MARKER
from relaybox.audit.query import get_failure, list_failures
from relaybox.config import AuditConfig
from relaybox.models import Outcome
from relaybox.store import Store, open_store
from relaybox.transports.base import (
    AmbiguousSend,
    OutgoingPart,
    PermanentError,
    RateLimited,
    SendResult,
    TransientError,
)
from relaybox.transports.memory import MemoryTransport


@pytest.fixture
def rb(store_url: str) -> relaybox.Relaybox:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


def unrecorded_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "relaybox.audit" and r.levelno == logging.ERROR
    ]


def _raise_zero_division() -> ZeroDivisionError:
    try:
        1 / 0  # noqa: B018 - a real exception with a real traceback
    except ZeroDivisionError as error:
        return error
    raise AssertionError("unreachable")


# -- recording ------------------------------------------------------------------------------


def test_record_keeps_every_field_and_the_traceback(store: Store):
    error = _raise_zero_division()
    payload = {"text": "flights to Oslo?", "n": 3}
    failure_id = record_job_failure(
        store,
        "agent",
        error,
        job_id=42,
        payload=payload,
        stage="llm",
        channel="sms",
        thread_id="chat-7",
        resource_id="+15550100",
        correlation_id="corr-1",
        attempt=2,
        terminal=False,
        payload_ref="s3://bucket/run-42.json",
        worker_id="w1",
    )
    assert failure_id is not None
    f = store.read_sync(get_failure(failure_id))
    assert (f.queue, f.job_id, f.stage, f.channel, f.thread_id) == (
        "agent",
        "42",
        "llm",
        "sms",
        "chat-7",
    )
    assert (f.resource_id, f.correlation_id, f.attempt, f.terminal, f.worker_id) == (
        "+15550100",
        "corr-1",
        2,
        False,
        "w1",
    )
    assert f.error_type == "ZeroDivisionError" and f.message == "division by zero"
    assert f.traceback is not None and "_raise_zero_division" in f.traceback
    assert json.loads(f.payload or "") == payload and f.payload_kind == "json"
    encoded = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    assert f.payload_size == len(encoded)
    assert f.payload_sha256 == hashlib.sha256(encoded).hexdigest()
    assert not f.payload_truncated and f.payload_ref == "s3://bucket/run-42.json"


def test_record_accepts_a_plain_message_and_odd_payloads(store: Store):
    class Unserialisable:
        def __repr__(self) -> str:
            return "<Unserialisable>"

    first = record_job_failure(store, "tools", "quota exceeded", payload={"obj": Unserialisable()})
    second = record_job_failure(store, "tools", ValueError(""), payload=b"\xff\x00\xfe")
    third = record_job_failure(store, "tools", "nul \x00 in text", payload="a\x00b")
    assert None not in (first, second, third)
    f1, f2, f3 = (store.read_sync(get_failure(i)) for i in (first, second, third))  # type: ignore[arg-type]
    assert f1.error_type == "Error" and f1.message == "quota exceeded"
    assert json.loads(f1.payload or "") == {"obj": "<Unserialisable>"}
    assert f2.error_type == "ValueError" and f2.message == "ValueError"  # empty str(error)
    assert f2.payload_kind == "base64" and base64.b64decode(f2.payload or "") == b"\xff\x00\xfe"
    assert "\x00" not in f3.message and "\x00" not in (f3.payload or "")


def test_large_payloads_are_truncated_with_marker_size_and_sha256(store: Store):
    config = AuditConfig(max_payload_bytes=1000)
    body = "é" * 3000  # 2 bytes each: the cut must not split a character
    failure_id = record_job_failure(store, "agent", "too big", payload=body, config=config)
    f = store.read_sync(get_failure(failure_id or 0))
    raw = body.encode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    assert f.payload_truncated and f.payload_size == len(raw) == 6000
    assert f.payload_sha256 == digest
    stored = f.payload or ""
    assert len(stored.encode("utf-8")) <= 1000
    assert stored.endswith(TRUNCATION_MARKER.format(size=6000, sha256=digest))
    assert stored.startswith("éé") and set(stored.split("…")[0]) == {"é"}


def test_small_payload_is_not_truncated(store: Store):
    config = AuditConfig(max_payload_bytes=64)
    failure_id = record_job_failure(store, "agent", "fits", payload="x" * 64, config=config)
    f = store.read_sync(get_failure(failure_id or 0))
    assert f.payload == "x" * 64 and not f.payload_truncated


# -- the store cannot take it: one JSON log line with the whole record ----------------------


def test_closed_store_falls_back_to_one_json_log_line(
    store_url: str, caplog: pytest.LogCaptureFixture
):
    store = open_store(store_url)
    store.close()
    caplog.set_level(logging.ERROR, logger="relaybox.audit")
    result = record_job_failure(
        store,
        "deliveries",
        TransientError("502 from the gateway"),
        job_id=9,
        stage="send",
        channel="sms",
        thread_id="chat-9",
        resource_id="+1555",
        correlation_id="corr-9",
        attempt=3,
        payload={"guid": "g-1", "body": "hello"},
    )
    assert result is None
    [line] = unrecorded_lines(caplog)
    assert line["event"] == "job_failure_not_stored" and "closed" in str(line["reason"])
    record = line["failure"]
    assert isinstance(record, dict)
    assert record["queue"] == "deliveries" and record["job_id"] == "9"
    assert record["stage"] == "send" and record["channel"] == "sms"
    assert record["thread_id"] == "chat-9" and record["resource_id"] == "+1555"
    assert record["correlation_id"] == "corr-9" and record["attempt"] == 3
    assert record["error_type"] == "TransientError"
    assert record["message"] == "502 from the gateway"
    assert json.loads(record["payload"]) == {"body": "hello", "guid": "g-1"}
    assert record["payload_sha256"] and record["created_at"]


async def test_async_recording_on_a_closed_store_logs_and_returns_none(
    store_url: str, caplog: pytest.LogCaptureFixture
):
    store = open_store(store_url)
    store.close()
    caplog.set_level(logging.ERROR, logger="relaybox.audit")
    auditor = FailureAuditor(store)
    assert await auditor.record(FailureReport(queue="agent", error="llm timeout")) is None
    [line] = unrecorded_lines(caplog)
    assert line["failure"]["message"] == "llm timeout"  # type: ignore[index]


async def test_worker_keeps_delivering_when_the_audit_table_is_broken(
    rb: relaybox.Relaybox, caplog: pytest.LogCaptureFixture
):
    # The failure table is gone (a botched manual migration): every audit insert fails,
    # but deliveries carry on and each failure still reaches the log, whole.
    rb.store.run_sync(lambda tx: tx.execute_script("DROP TABLE job_failures"))
    caplog.set_level(logging.ERROR, logger="relaybox.audit")
    d = (
        await rb.enqueue(channel="mem", thread_id="chat-1", recipient="al", parts=["a", "b"])
    ).delivery
    errors = iter([TransientError("502"), TransientError("503")])
    transport = MemoryTransport(script=lambda p: next(errors, None))
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    assert transport.texts() == ["a", "b"]
    lines = unrecorded_lines(caplog)
    assert [line["failure"]["message"] for line in lines] == ["502", "503"]  # type: ignore[index]
    assert all(line["failure"]["job_id"] == str(d.id) for line in lines)  # type: ignore[index]


# -- the delivery engine records its failures ----------------------------------------------


class NeverSure(MemoryTransport):
    """A transport that does not deduplicate and cannot tell whether a send arrived."""

    async def reconcile(self, part: OutgoingPart) -> None:
        return None


async def _failures_of(rb: relaybox.Relaybox, delivery_id: int) -> list[relaybox.JobFailure]:
    rows = await rb.store.read(
        list_failures(FailureFilter(queue="deliveries", job_id=str(delivery_id)))
    )
    return sorted(rows, key=lambda f: f.id)


@pytest.mark.parametrize(
    ("script_errors", "final", "expected"),
    [
        (
            [TransientError("502 bad gateway")],
            "delivered",
            [("TransientError", "send", False)],
        ),
        ([PermanentError("no such recipient")], "failed", [("PermanentError", "send", True)]),
        (
            [SendResult(Outcome.NOT_SURFACED, "m1")],
            "delivered",
            [("NotSurfaced", "send", False)],
        ),
        (
            [RateLimited("slow down", retry_after=0.01)],
            "delivered",
            [("RateLimited", "send", False)],
        ),
        (
            [
                TransientError("e1"),
                TransientError("e2"),
                TransientError("e3"),
                TransientError("e4"),
            ],
            "failed",
            [("TransientError", "send", False)] * 3 + [("TransientError", "send", True)],
        ),
    ],
    ids=["transient", "permanent", "not_surfaced", "rate_limited", "exhausted"],
)
async def test_delivery_failures_are_audited_with_job_and_correlation(
    rb: relaybox.Relaybox,
    script_errors: list[object],
    final: str,
    expected: list[tuple[str, str, bool]],
):
    result = await rb.enqueue(
        channel="mem",
        thread_id="chat-5",
        recipient="bob",
        resource_id="user-bob",
        parts=["hello", "world"],
        correlation_id="corr-5",
    )
    d = result.delivery
    answers = iter(script_errors)
    transport = MemoryTransport(script=lambda p: next(answers, None))  # type: ignore[arg-type]
    await run_worker_until(rb, transport, status_is(rb, d.id, final))
    rows = await _failures_of(rb, d.id)
    assert [(f.error_type, f.stage, f.terminal) for f in rows] == expected
    for f in rows:
        assert (f.queue, f.job_id, f.channel, f.thread_id) == (
            "deliveries",
            str(d.id),
            "mem",
            "chat-5",
        )
        assert (f.resource_id, f.correlation_id) == ("user-bob", "corr-5")
        assert f.worker_id and f.attempt is not None and f.attempt >= 1
        payload = json.loads(f.payload or "")
        assert payload["delivery_id"] == d.id and payload["guid"] == d.parts[0].guid
        assert payload["body"] == "hello" and payload["part_index"] == 0
    if final == "failed":
        assert rows[-1].terminal
    if len(rows) > 1:
        assert [f.attempt for f in rows] == list(range(1, len(rows) + 1))
        assert rows[-1].message.startswith("gave up after 4 attempts")


async def test_parked_ambiguous_send_is_audited_at_the_reconcile_stage(rb: relaybox.Relaybox):
    d = (await rb.enqueue(channel="mem", thread_id="chat-6", recipient="c", parts=["x"])).delivery
    transport = NeverSure(dedup=False, script=lambda p: AmbiguousSend("read timeout"))
    await run_worker_until(rb, transport, status_is(rb, d.id, "unknown"))
    [f] = await _failures_of(rb, d.id)
    assert (f.error_type, f.stage, f.terminal) == ("AmbiguousSend", "reconcile", True)
    assert "parked for an operator" in f.message


async def test_expired_replies_are_audited(store_url: str):
    rb = relaybox.open(store_url, config=fast_config(max_age_seconds=0.05))
    try:
        d = (
            await rb.enqueue(channel="mem", thread_id="chat-8", recipient="d", parts=["y"])
        ).delivery
        await asyncio.sleep(0.1)
        transport = MemoryTransport()

        async def audited() -> bool:
            return bool(await _failures_of(rb, d.id))

        await run_worker_until(rb, transport, audited)
        [f] = await _failures_of(rb, d.id)
        assert (f.error_type, f.stage, f.terminal) == ("Expired", "expire", True)
        assert (await rb.delivery(d.id)).status == "expired" and transport.wire == []
    finally:
        rb.close()


async def test_client_record_failure_and_failures(rb: relaybox.Relaybox):
    fid = await rb.record_failure(
        "tools", RuntimeError("calendar API 500"), job_id="step-3", stage="tool", thread_id="t"
    )
    [f] = await rb.failures(FailureFilter(stage="tool"))
    assert f.id == fid and f.error_type == "RuntimeError" and f.job_id == "step-3"


async def test_a_store_too_slow_to_answer_gets_the_record_in_the_log_instead(
    store: Store, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.ERROR, logger="relaybox.audit")
    started = threading.Event()

    def long_unit(tx: object) -> None:
        started.set()
        time.sleep(0.5)

    busy = store.submit(long_unit)  # the writer is stuck in a long unit...
    assert started.wait(5)  # ...already running, so ours waits in the queue behind it
    auditor = FailureAuditor(store, AuditConfig(record_timeout_seconds=0.05))
    result = await auditor.record(FailureReport(queue="agent", error="slow store", job_id=1))
    assert result is None
    [line] = unrecorded_lines(caplog)
    assert "did not answer within 0.05s" in str(line["reason"])
    assert line["maybe_stored"] is False  # withdrawn before it ran: it will not appear later
    busy.result()
    assert store.read_sync(list_failures(FailureFilter())) == []
