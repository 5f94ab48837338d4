"""Bulk enqueue: many replies in one transaction, each exactly what a single enqueue gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import relaybox
from _outbox_helpers import fast_config
from relaybox.errors import InvalidReply, ReplyKeyConflict, UnknownChannel
from relaybox.models import Status
from relaybox.outbox import transitions as tr
from relaybox.outbox.guid import part_guid


@pytest.fixture
def rb(store_url: str) -> Iterator[relaybox.Relaybox]:
    handle = relaybox.open(store_url, config=fast_config())
    yield handle
    handle.close()


def reply(key: str, thread: str = "t1", parts: list[str] | None = None, **extra: object) -> dict:  # type: ignore[type-arg]
    return {
        "channel": "mem",
        "thread_id": thread,
        "recipient": "+15550100",
        "parts": parts or [f"{key} a", f"{key} b"],
        "reply_key": key,
        **extra,
    }


async def stored_count(rb: relaybox.Relaybox) -> int:
    return len(await rb.deliveries(limit=1000))


async def test_replies_are_stored_in_list_order_with_their_guids(rb: relaybox.Relaybox):
    results = await rb.enqueue_many(
        [reply("k1", "t1"), reply("k2", "t2", ["only"]), reply("k3", "t1")]
    )
    assert [r.created for r in results] == [True, True, True]
    ids = [r.delivery.id for r in results]
    assert ids == sorted(ids)  # one thread's replies keep their order (claim order is by id)
    for result, key in zip(results, ["k1", "k2", "k3"], strict=True):
        stored = await rb.delivery(result.delivery.id)
        assert stored.reply_key == key and stored.status is Status.QUEUED
        assert [p.guid for p in stored.parts] == [
            part_guid(key, i) for i in range(len(stored.parts))
        ]
        assert stored.parts == result.delivery.parts
    # Only the head of thread t1 is claimable; t2's reply is its own head.
    claimed = await rb.store.run(tr.claim("w", ["mem"], 10, lease_seconds=30))
    assert sorted(d.id for d in claimed) == [ids[0], ids[1]]


async def test_reply_keys_seen_before_return_the_stored_delivery(rb: relaybox.Relaybox):
    first = await rb.enqueue(**reply("old"))  # type: ignore[arg-type]
    results = await rb.enqueue_many([reply("old"), reply("new"), reply("new")])
    assert [r.created for r in results] == [False, True, False]
    assert results[0].delivery.id == first.delivery.id
    assert results[2].delivery.id == results[1].delivery.id
    assert results[2].delivery.parts == results[1].delivery.parts
    assert await stored_count(rb) == 2


async def test_a_reused_reply_key_or_a_bad_reply_stores_nothing(rb: relaybox.Relaybox):
    await rb.enqueue(**reply("taken"))  # type: ignore[arg-type]
    with pytest.raises(ReplyKeyConflict, match="taken"):
        await rb.enqueue_many([reply("fresh-1"), reply("taken", parts=["other text"])])
    with pytest.raises(InvalidReply, match="reply 2: part 1 is empty"):
        await rb.enqueue_many([reply("fresh-2"), reply("fresh-3", parts=[" "])])
    with pytest.raises(InvalidReply, match="reply 1: unknown field"):
        await rb.enqueue_many([{**reply("fresh-4"), "colour": "red"}])
    with pytest.raises(InvalidReply, match="reply 1: missing parts"):
        await rb.enqueue_many([{"channel": "mem", "thread_id": "t", "recipient": "r"}])
    with pytest.raises(UnknownChannel, match="reply 2: unknown channel 'nope'"):
        await rb.enqueue_many([reply("fresh-5"), {**reply("fresh-6"), "channel": "nope"}])
    assert await stored_count(rb) == 1
    assert await rb.enqueue_many([]) == []


async def test_supersede_applies_in_list_order(rb: relaybox.Relaybox):
    results = await rb.enqueue_many(
        [reply("s1"), reply("s2"), reply("s3", supersede=True), reply("other", "t9")]
    )
    assert results[2].superseded == (results[0].delivery.id, results[1].delivery.id)
    states = [(await rb.delivery(r.delivery.id)).status for r in results]
    assert states == [Status.CANCELLED, Status.CANCELLED, Status.QUEUED, Status.QUEUED]
