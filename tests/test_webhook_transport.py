"""WebhookTransport against a real HTTP server on loopback: every row of the contract."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from relaybox.models import Outcome
from relaybox.testing.loopback import LoopbackReceiver, Response, json_response
from relaybox.transports.base import (
    NOT_SENT,
    AmbiguousSend,
    OutgoingPart,
    PermanentError,
    RateLimited,
    ReceiverDown,
    SendResult,
    Transport,
    Unavailable,
)
from relaybox.transports.webhook import WebhookTransport, parse_retry_after


def make_part(guid: str = "guid-1", text: str = "hello", index: int = 0) -> OutgoingPart:
    return OutgoingPart(
        guid=guid,
        delivery_id=7,
        thread_id="thread-1",
        recipient="+15550001",
        text=text,
        index=index,
        count=2,
        correlation_id="corr-1",
        channel="sms",
    )


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(hang_seconds=5.0) as receiver:
        yield receiver


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    response: Response = (status, headers or {}, body)
    return lambda _body: response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def send_once(rx: LoopbackReceiver, part: OutgoingPart | None = None, **kw: Any) -> Any:
    transport = WebhookTransport(rx.url, **kw)
    try:
        return await transport.send(part or make_part())
    finally:
        await transport.aclose()


# --- request -------------------------------------------------------------------------------


async def test_posts_json_body_with_idempotency_key_and_headers(rx: LoopbackReceiver) -> None:
    transport = WebhookTransport(rx.url, headers={"Authorization": "Bearer t0k"})
    assert isinstance(transport, Transport)
    part = make_part(text="héllo 👋")
    result = await transport.send(part)
    await transport.aclose()

    assert result.outcome is Outcome.SURFACED
    assert result.message_id is not None and result.message_id.startswith("rx-")
    assert rx.wire == [
        {
            "guid": "guid-1",
            "delivery_id": 7,
            "thread_id": "thread-1",
            "recipient": "+15550001",
            "text": "héllo 👋",
            "index": 0,
            "count": 2,
            "correlation_id": "corr-1",
        }
    ]
    headers = rx.wire_headers[0]
    assert headers["idempotency-key"] == "guid-1"
    assert headers["authorization"] == "Bearer t0k"
    assert headers["content-type"] == "application/json"
    assert rx.texts() == ["héllo 👋"]


async def test_configured_header_cannot_override_idempotency_key(rx: LoopbackReceiver) -> None:
    await send_once(rx, headers={"idempotency-key": "wrong"})
    assert rx.wire_headers[0]["idempotency-key"] == "guid-1"


# --- 2xx -----------------------------------------------------------------------------------


async def test_2xx_with_message_id(rx: LoopbackReceiver) -> None:
    rx.behaviour = answer(201, b'{"message_id": "abc"}', {"Content-Type": "application/json"})
    assert await send_once(rx) == SendResult(Outcome.SURFACED, "abc")


@pytest.mark.parametrize("status", [200, 202, 204])
async def test_2xx_without_body_is_surfaced(rx: LoopbackReceiver, status: int) -> None:
    rx.behaviour = answer(status)
    assert await send_once(rx) == SendResult(Outcome.SURFACED, None)


async def test_2xx_surfaced_false_is_not_surfaced(rx: LoopbackReceiver) -> None:
    rx.behaviour = lambda _b: json_response(200, {"surfaced": False, "message_id": "m1"})
    assert await send_once(rx) == SendResult(Outcome.NOT_SURFACED, "m1")


@pytest.mark.parametrize(
    ("body", "message_id"),
    [
        (b"<html>oops</html>", None),
        (b"\xff\xfe\x00garbage", None),
        (b"{", None),
        (b"[1, 2, 3]", None),
        (b'"just a string"', None),
        (b"null", None),
        (b"[" * 100_000, None),  # nesting deep enough to blow the JSON parser's recursion
        (b'{"message_id": null}', None),
        (b'{"message_id": {"nested": 1}}', None),
        (b'{"message_id": 42}', "42"),
        (b'{"surfaced": "false"}', None),  # only a JSON false means not surfaced
    ],
)
async def test_2xx_with_garbage_body_is_still_surfaced(
    rx: LoopbackReceiver, body: bytes, message_id: str | None
) -> None:
    rx.behaviour = answer(200, body, {"Content-Type": "application/json"})
    assert await send_once(rx) == SendResult(Outcome.SURFACED, message_id)


# --- 409 -----------------------------------------------------------------------------------


async def test_resend_of_same_guid_is_duplicate_with_first_message_id(
    rx: LoopbackReceiver,
) -> None:
    transport = WebhookTransport(rx.url)
    first = await transport.send(make_part())
    second = await transport.send(make_part())
    await transport.aclose()
    assert first.outcome is Outcome.SURFACED
    assert second == SendResult(Outcome.DUPLICATE, first.message_id)
    assert len(rx.wire) == 2 and len(rx.seen) == 1


async def test_409_without_body_is_duplicate(rx: LoopbackReceiver) -> None:
    rx.behaviour = answer(409, b"conflict")
    assert await send_once(rx) == SendResult(Outcome.DUPLICATE, None)


# --- rate limits and unavailability --------------------------------------------------------


async def test_429_with_retry_after_seconds(rx: LoopbackReceiver) -> None:
    rx.behaviour = answer(429, b"slow down", {"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await send_once(rx)
    assert type(caught.value) is RateLimited
    assert caught.value.retry_after == 7.0
    assert str(caught.value) == f"HTTP 429 from {rx.url}: slow down"


async def test_429_with_retry_after_http_date(rx: LoopbackReceiver) -> None:
    rx.behaviour = answer(429, headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})
    with pytest.raises(RateLimited) as caught:
        await send_once(rx)
    assert caught.value.retry_after is not None
    assert 115 <= caught.value.retry_after <= 121


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("soon", None), ("-5", 0.0), ("9999999", 86400.0)],
)
async def test_429_retry_after_missing_garbage_negative_huge(
    rx: LoopbackReceiver, header: str | None, expected: float | None
) -> None:
    rx.behaviour = answer(429, headers={"Retry-After": header} if header else {})
    with pytest.raises(RateLimited) as caught:
        await send_once(rx)
    assert caught.value.retry_after == expected


async def test_503_with_retry_after_is_unavailable(rx: LoopbackReceiver) -> None:
    rx.behaviour = answer(503, b"maintenance", {"Retry-After": "30"})
    with pytest.raises(Unavailable) as caught:
        await send_once(rx)
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "whenever"}])
async def test_503_without_usable_retry_after_is_receiver_down(
    rx: LoopbackReceiver, headers: dict[str, str]
) -> None:
    rx.behaviour = answer(503, b"down", headers)
    with pytest.raises(ReceiverDown) as caught:
        await send_once(rx)
    assert str(caught.value) == f"HTTP 503 from {rx.url}: down"


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("inf") == 86400.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Mon, 99 Foo 2024 99:99:99 GMT") is None
    assert parse_retry_after(formatdate(now + 60, usegmt=True), now=now) == 60.0
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after(formatdate(now + 10 * 86400, usegmt=True), now=now) == 86400.0


# --- other errors --------------------------------------------------------------------------


async def test_500_is_receiver_down_with_one_line_message(rx: LoopbackReceiver) -> None:
    body = ("line one\nline two\r\n" + "x" * 500).encode()
    rx.behaviour = answer(500, body)
    with pytest.raises(ReceiverDown) as caught:
        await send_once(rx)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    prefix = f"HTTP 500 from {rx.url}: "
    assert message.startswith(prefix + "line one line two xxx")
    assert len(message) == len(prefix) + 200


async def test_error_with_empty_body_and_url_secrets_hidden(rx: LoopbackReceiver) -> None:
    rx.behaviour = answer(502)
    url = rx.url.replace("http://", "http://user:pw@") + "?token=s3cret"
    transport = WebhookTransport(url)
    with pytest.raises(ReceiverDown) as caught:
        await transport.send(make_part())
    await transport.aclose()
    assert str(caught.value) == f"HTTP 502 from {rx.url}: (empty body)"


@pytest.mark.parametrize("status", [400, 401, 404, 422, 301])
async def test_other_4xx_and_3xx_are_permanent(rx: LoopbackReceiver, status: int) -> None:
    rx.behaviour = answer(status, b"bad recipient", {"Location": "http://example.invalid/"})
    with pytest.raises(PermanentError) as caught:
        await send_once(rx)
    assert str(caught.value) == f"HTTP {status} from {rx.url}: bad recipient"
    assert rx.seen == []


async def test_connection_refused_is_receiver_down() -> None:
    transport = WebhookTransport(f"http://127.0.0.1:{free_port()}/send", timeout_seconds=2)
    with pytest.raises(ReceiverDown) as caught:
        await transport.send(make_part())
    await transport.aclose()
    assert type(caught.value) is ReceiverDown
    assert "could not connect" in str(caught.value)


async def test_hanging_receiver_is_ambiguous_within_timeout(rx: LoopbackReceiver) -> None:
    rx.behaviour = lambda _b: "hang"
    started = time.monotonic()
    with pytest.raises(AmbiguousSend):
        await send_once(rx, timeout_seconds=0.3)
    assert time.monotonic() - started < 2.0
    assert len(rx.wire) == 1 and rx.seen == []


async def test_trickling_answer_hits_the_overall_deadline() -> None:
    """Each read is quick, so only the overall deadline can stop a slow drip."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.05):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    transport = WebhookTransport(f"http://127.0.0.1:{port}/send", timeout_seconds=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(AmbiguousSend) as caught:
            await transport.send(make_part())
    finally:
        stop.set()
        await transport.aclose()
        listener.close()
        thread.join(timeout=2)
    assert time.monotonic() - started < 1.5
    assert "within 0.5s" in str(caught.value)


async def test_connection_dropped_without_answer_is_ambiguous() -> None:
    with LoopbackReceiver(hang_seconds=0.0) as receiver:
        receiver.behaviour = lambda _b: "hang"  # hangs for 0 s, then closes without answering
        with pytest.raises(AmbiguousSend) as caught:
            await send_once(receiver, timeout_seconds=5)
    assert "RemoteProtocolError" in str(caught.value)


async def test_bad_url_scheme_is_permanent() -> None:
    transport = WebhookTransport("ftp://127.0.0.1/send")
    with pytest.raises(PermanentError):
        await transport.send(make_part())
    await transport.aclose()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WebhookTransport("http://127.0.0.1/send", timeout_seconds=0)


# --- dedup flag and reconcile --------------------------------------------------------------


def test_dedups_by_guid_reflects_config() -> None:
    assert WebhookTransport("http://127.0.0.1/send").dedups_by_guid is True
    assert WebhookTransport("http://127.0.0.1/send", dedup=False).dedups_by_guid is False


async def test_reconcile_after_ambiguous_send_finds_the_part(rx: LoopbackReceiver) -> None:
    rx.behaviour = lambda _b: "surface_and_hang"  # the user got it; the answer never comes
    transport = WebhookTransport(rx.url, dedup=False, status_url=rx.status_url, timeout_seconds=0.3)
    part = make_part()
    with pytest.raises(AmbiguousSend):
        await transport.send(part)
    result = await transport.reconcile(part)
    await transport.aclose()
    assert isinstance(result, SendResult)
    assert result.outcome is Outcome.SURFACED
    assert result.message_id == rx.deduplicator.get(part.guid)
    assert rx.status_requests == ["guid-1"]


async def test_reconcile_not_found_is_not_sent(rx: LoopbackReceiver) -> None:
    transport = WebhookTransport(rx.url, status_url=rx.status_url)
    assert await transport.reconcile(make_part("never-sent")) is NOT_SENT
    await transport.aclose()


async def test_reconcile_surfaced_false_is_not_sent(rx: LoopbackReceiver) -> None:
    rx.status_behaviour = lambda _guid: json_response(200, {"surfaced": False})
    transport = WebhookTransport(rx.url, status_url=rx.status_url)
    assert await transport.reconcile(make_part()) is NOT_SENT
    await transport.aclose()


async def test_reconcile_keeps_status_url_query_and_sends_key(rx: LoopbackReceiver) -> None:
    seen_guids: list[str] = []

    def status(guid: str) -> Response:
        seen_guids.append(guid)
        return json_response(200, {"surfaced": True, "message_id": "m-9"})

    rx.status_behaviour = status
    transport = WebhookTransport(rx.url, status_url=rx.status_url + "?tenant=a")
    assert await transport.reconcile(make_part("g x&y")) == SendResult(Outcome.SURFACED, "m-9")
    await transport.aclose()
    assert seen_guids == ["g x&y"]


async def test_reconcile_without_status_url_cannot_tell(rx: LoopbackReceiver) -> None:
    transport = WebhookTransport(rx.url)
    assert await transport.reconcile(make_part()) is None
    await transport.aclose()
    assert rx.status_requests == []


@pytest.mark.parametrize(
    "status_answer",
    [
        json_response(500, {"surfaced": True}),
        json_response(200, {"message_id": "no verdict"}),
        json_response(200, {"surfaced": "yes"}),
        (200, {}, b"not json"),
        (302, {"Location": "/elsewhere"}, b""),
    ],
)
async def test_reconcile_unclear_answer_cannot_tell(
    rx: LoopbackReceiver, status_answer: Response
) -> None:
    rx.status_behaviour = lambda _guid: status_answer
    transport = WebhookTransport(rx.url, status_url=rx.status_url)
    assert await transport.reconcile(make_part()) is None
    await transport.aclose()


async def test_reconcile_errors_cannot_tell(rx: LoopbackReceiver) -> None:
    refused = WebhookTransport(rx.url, status_url=f"http://127.0.0.1:{free_port()}/status")
    assert await refused.reconcile(make_part()) is None
    await refused.aclose()

    rx.status_behaviour = lambda _guid: "hang"
    hanging = WebhookTransport(rx.url, status_url=rx.status_url, timeout_seconds=0.3)
    started = time.monotonic()
    assert await hanging.reconcile(make_part()) is None
    assert time.monotonic() - started < 2.0
    await hanging.aclose()


# --- client ownership ----------------------------------------------------------------------


async def test_aclose_closes_own_client_but_not_a_shared_one(rx: LoopbackReceiver) -> None:
    async with httpx.AsyncClient() as shared:
        transport = WebhookTransport(rx.url, client=shared)
        assert (await transport.send(make_part("a"))).outcome is Outcome.SURFACED
        await transport.aclose()
        assert not shared.is_closed

    own = WebhookTransport(rx.url)
    await own.send(make_part("b"))
    client = own._client
    assert client is not None
    await own.aclose()
    assert client.is_closed
    await own.aclose()  # idempotent


async def test_concurrent_sends(rx: LoopbackReceiver) -> None:
    import asyncio

    async with WebhookTransport(rx.url) as transport:
        results = await asyncio.gather(
            *(transport.send(make_part(f"g{i}", text=str(i))) for i in range(20))
        )
    assert all(r.outcome is Outcome.SURFACED for r in results)
    assert sorted(json.dumps(b["guid"]) for b in rx.seen) == sorted(
        json.dumps(f"g{i}") for i in range(20)
    )
