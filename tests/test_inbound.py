"""Inbound messages and correlation (spec C4), on SQLite and PostgreSQL: recorded once (also
across restarts and concurrent webhook retries), answered in one transaction with the reply,
states from "received" to "replied", and gaps (silent loss)."""

from __future__ import annotations

import asyncio
import time

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until, status_is
from relaybox.errors import InvalidInbound, InvalidState, NotFound, ReplyKeyConflict
from relaybox.inbound import (
    InboundState,
    RecordInbound,
    build_inbound,
    enqueue_reply,
    find_gaps,
    get_inbound,
)
from relaybox.outbox.enqueue import build_request
from relaybox.store import Tx
from relaybox.transports.base import PermanentError
from relaybox.transports.memory import MemoryTransport


@pytest.fixture
def rb(store_url: str) -> relaybox.Relaybox:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


async def receive(rb: relaybox.Relaybox, external_id: str = "SM1", **kw: object):
    fields: dict[str, object] = {
        "channel": "mem",
        "external_id": external_id,
        "thread_id": "chat-42",
        "resource_id": "+15550100",
        "text": "any flights to Oslo?",
        **kw,
    }
    return await rb.record_inbound(**fields)  # type: ignore[arg-type]


def delivery_row(rb: relaybox.Relaybox, delivery_id: int) -> dict[str, object]:
    row = rb.store.read_sync(lambda tx: tx.fetch_one("delivery_by_id", {"id": delivery_id}))
    assert row is not None
    return row


def _all_inbound() -> dict[str, object]:
    return {
        "since": None,
        "channel": None,
        "thread_id": None,
        "resource_id": None,
        "state": None,
        "limit": 1000,
    }


# -- recorded once -------------------------------------------------------------------------


async def test_first_record_is_received_with_a_correlation_id(rb: relaybox.Relaybox):
    got = await receive(rb, meta={"platform_ts": 1700000000})
    assert not got.duplicate and got.reply is None
    m = got.inbound
    assert m.state is InboundState.RECEIVED and m.status == "received"
    assert m.correlation_id == got.correlation_id and len(m.correlation_id) == 36
    assert (m.channel, m.external_id, m.thread_id, m.resource_id) == (
        "mem",
        "SM1",
        "chat-42",
        "+15550100",
    )
    assert m.text == "any flights to Oslo?" and m.meta == {"platform_ts": 1700000000}


async def test_same_platform_message_twice_is_a_duplicate_with_the_same_correlation(
    rb: relaybox.Relaybox,
):
    first = await receive(rb)
    again = await receive(rb, text="edited text is not taken")
    assert again.duplicate and again.inbound.id == first.inbound.id
    assert again.correlation_id == first.correlation_id
    assert again.inbound.duplicate_count == 1 and again.inbound.text == "any flights to Oslo?"
    other_channel = await receive(rb, channel="console")
    assert not other_channel.duplicate  # ids are per channel


async def test_duplicate_is_recognised_across_a_restart(store_url: str):
    before = relaybox.open(store_url, config=fast_config())
    first = await receive(before)
    before.close()
    after = relaybox.open(store_url, config=fast_config())
    try:
        again = await receive(after)
        assert again.duplicate and again.correlation_id == first.correlation_id
        assert again.inbound.id == first.inbound.id
    finally:
        after.close()


async def test_concurrent_webhook_retries_record_one_message(store_url: str):
    handles = [relaybox.open(store_url, config=fast_config()) for _ in range(3)]
    try:
        results = await asyncio.gather(*(receive(h) for h in handles for _ in range(5)))
        assert sum(not r.duplicate for r in results) == 1
        assert len({r.correlation_id for r in results}) == 1
        assert results[0].inbound.id == results[-1].inbound.id
        final = await handles[0].inbound(results[0].inbound.id)
        assert final.duplicate_count == 14
    finally:
        for h in handles:
            h.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"external_id": ""}, "external id must be a non-empty string"),
        ({"thread_id": "  "}, "thread id must be a non-empty string"),
        ({"text": b"\xff\xfe"}, "text is not valid UTF-8"),
        ({"text": "x" * 300_000}, "text is 300000 bytes"),
        ({"text": "a\x00b"}, "text contains a NUL character"),
        ({"meta": {"x": float("nan")}}, "meta is not plain JSON"),
        ({"meta": ["not", "a", "dict"]}, "meta must be a dict"),
        ({"resource_id": "\udcff"}, "resource id is not valid UTF-8"),
    ],
)
async def test_bad_inbound_is_rejected_and_nothing_is_stored(
    rb: relaybox.Relaybox, fields: dict[str, object], message: str
):
    with pytest.raises(InvalidInbound, match=message):
        await receive(rb, **fields)
    assert await rb.store.read(lambda tx: tx.fetch_all("list_inbound", _all_inbound())) == []


async def test_a_correlation_id_belongs_to_one_message(rb: relaybox.Relaybox):
    await receive(rb, external_id="a", correlation_id="corr-1")
    with pytest.raises(InvalidInbound, match="already belongs to inbound message 1"):
        await receive(rb, external_id="b", correlation_id="corr-1")
    again = await receive(rb, external_id="a", correlation_id="corr-1")
    assert again.duplicate


# -- answering: the transactional outbox ---------------------------------------------------


async def test_reply_carries_the_correlation_id_and_links_back(rb: relaybox.Relaybox):
    got = await receive(rb)
    result = await rb.reply(got.inbound.id, ["Found 3 flights.", "Book one?"])
    d = result.delivery
    assert result.created and d.correlation_id == got.correlation_id
    assert (d.channel, d.thread_id, d.recipient, d.resource_id) == (
        "mem",
        "chat-42",
        "+15550100",
        "+15550100",
    )
    assert delivery_row(rb, d.id)["inbound_id"] == got.inbound.id
    m = await rb.inbound(got.inbound.id)
    assert m.status == "reply_enqueued" and m.state is InboundState.REPLY_PENDING
    assert m.handled_at is not None and m.replied_at is None
    # An agent that crashed after the commit and runs again gets the stored reply back.
    again = await rb.reply(got.inbound.id, ["Found 3 flights.", "Book one?"])
    assert not again.created and again.delivery.id == d.id
    # "replied" only once the reply was delivered to the user.
    transport = MemoryTransport()
    await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
    done = await rb.inbound(got.inbound.id)
    assert done.state is InboundState.REPLIED and done.replied_at is not None
    assert done.delivered_replies == 1 and transport.texts() == ["Found 3 flights.", "Book one?"]


async def test_record_with_reply_stores_both_in_one_transaction(rb: relaybox.Relaybox):
    got = await receive(rb, reply=["Working on it."])
    assert got.reply is not None and got.reply.created
    assert got.reply.delivery.correlation_id == got.correlation_id
    assert got.inbound.state is InboundState.REPLY_PENDING
    again = await receive(rb, reply=["Working on it."])
    assert again.duplicate and again.reply is None  # the agent does not answer twice
    assert len(await rb.deliveries()) == 1


async def test_reply_that_cannot_be_stored_leaves_the_message_unanswered(rb: relaybox.Relaybox):
    got = await receive(rb)
    await rb.enqueue(
        channel="mem", thread_id="chat-42", recipient="+15550100", parts=["A"], reply_key="k"
    )
    with pytest.raises(ReplyKeyConflict):
        await rb.reply(got.inbound.id, ["B"], reply_key="k")
    m = await rb.inbound(got.inbound.id)
    assert m.status == "received" and m.handled_at is None and m.state is InboundState.RECEIVED
    assert len(await rb.deliveries()) == 1


async def test_failure_between_the_two_writes_leaves_neither(rb: relaybox.Relaybox):
    """Crash after the message is stored but before its reply is: nothing is stored."""
    request = build_inbound(channel="mem", external_id="X1", thread_id="t", resource_id="r")
    reply = build_request(rb.config.channel("mem"), thread_id="t", recipient="r", parts=["hi"])

    def crash_after_first_write(tx: Tx) -> None:
        RecordInbound(request)(tx)
        raise RuntimeError("process died here")

    with pytest.raises(RuntimeError):
        await rb.store.run(crash_after_first_write)
    assert await rb.store.read(lambda tx: tx.fetch_all("list_inbound", _all_inbound())) == []

    got = await receive(rb, external_id="X2", thread_id="t", resource_id="r")
    inbound_row = await rb.store.read(
        lambda tx: tx.fetch_one("inbound_by_id", {"id": got.inbound.id})
    )

    def crash_after_enqueue(tx: Tx) -> None:
        enqueue_reply(tx, inbound_row, reply, False, time.time())  # type: ignore[arg-type]
        raise RuntimeError("process died here")

    with pytest.raises(RuntimeError):
        await rb.store.run(crash_after_enqueue)
    assert await rb.deliveries() == []
    assert (await rb.inbound(got.inbound.id)).status == "received"


async def test_reply_to_a_missing_message_is_a_clear_error(rb: relaybox.Relaybox):
    with pytest.raises(NotFound, match="inbound message 99 does not exist"):
        await rb.reply(99, ["hi"])


# -- no reply needed, states, gaps ---------------------------------------------------------


async def test_no_reply_needed_is_final_and_not_after_a_reply(rb: relaybox.Relaybox):
    quiet = await receive(rb, external_id="thumbs-up")
    m = await rb.mark_no_reply_needed(quiet.inbound.id, "reaction only")
    assert m.state is InboundState.NO_REPLY_NEEDED and m.note == "reaction only"
    assert (await rb.mark_no_reply_needed(quiet.inbound.id)).state is InboundState.NO_REPLY_NEEDED
    answered = await receive(rb, external_id="question")
    await rb.reply(answered.inbound.id, ["answer"])
    with pytest.raises(InvalidState, match="already has a reply enqueued"):
        await rb.mark_no_reply_needed(answered.inbound.id)
    with pytest.raises(NotFound):
        await rb.mark_no_reply_needed(12345)


async def test_gaps_list_messages_without_a_delivered_reply(rb: relaybox.Relaybox):
    silent = await receive(rb, external_id="silent")
    delivered = await receive(rb, external_id="delivered", thread_id="chat-d")
    quiet = await receive(rb, external_id="quiet")
    failing = await receive(rb, external_id="failing", thread_id="chat-f")
    await rb.mark_no_reply_needed(quiet.inbound.id)
    ok = await rb.reply(delivered.inbound.id, ["fine"])
    bad = await rb.reply(failing.inbound.id, ["doomed"])
    transport = MemoryTransport(
        script=lambda p: PermanentError("blocked") if p.thread_id == "chat-f" else None
    )

    async def both_done() -> bool:
        a, b = await rb.delivery(ok.delivery.id), await rb.delivery(bad.delivery.id)
        return a.status == "delivered" and b.status == "failed"

    await run_worker_until(rb, transport, both_done)
    later = time.time() + 600
    gaps = await rb.store.read(find_gaps(300, now=later))
    assert [(g.external_id, g.state) for g in gaps] == [
        ("silent", InboundState.RECEIVED),
        ("failing", InboundState.REPLY_FAILED),
    ]
    assert gaps[0].id == silent.inbound.id
    assert await rb.store.read(find_gaps(300)) == []  # nothing is old enough yet
    assert [g.external_id for g in await rb.gaps(0)] == ["silent", "failing"]
    since_later = await rb.store.read(find_gaps(0, since=later, now=later + 1))
    assert since_later == []


async def test_cancelled_reply_is_a_visible_state(rb: relaybox.Relaybox):
    got = await receive(rb)
    result = await rb.reply(got.inbound.id, ["stale"])
    await rb.cancel(result.delivery.id)
    m = await rb.store.read(get_inbound(got.inbound.id))
    assert m.state is InboundState.REPLY_CANCELLED and m.delivered_replies == 0
