"""Claim races: never two deliveries of one thread in flight, each thread in enqueue order.

PostgreSQL runs claims concurrently (READ COMMITTED, SKIP LOCKED), so the races are real there;
the ones that can also happen on SQLite (an operator requeue) run on both stores.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import psycopg
from psycopg.rows import dict_row

from _outbox_helpers import fast_config
from relaybox.models import Delivery, Status
from relaybox.outbox import transitions as tr
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Store, Tx, open_store
from relaybox.store.postgres import PostgresTx
from relaybox.store.queries import load_queries, to_pyformat

CHANNEL = fast_config().channel("mem")


def _request(thread: str, key: str, parts: int = 1) -> EnqueueUnit:
    texts = [f"{key}.{i}" for i in range(parts)]
    return EnqueueUnit(
        build_request(CHANNEL, thread_id=thread, recipient="u", parts=texts, reply_key=key)
    )


def _claim(store: Store, worker: str, limit: int = 10) -> list[Delivery]:
    return store.run_sync(tr.claim(worker, ["mem"], limit, lease_seconds=30))


def _deliver(store: Store, d: Delivery, worker: str) -> None:
    lease = tr.Lease(d.id, d.lease_epoch)
    for part in d.parts:
        attempt = tr.AttemptRecord(
            d.id, d.attempts, worker, time.time(), "surfaced", d.correlation_id, part.index
        )
        assert store.run_sync(tr.record_sent(lease, part.index, "surfaced", None, attempt))


def test_enqueues_committed_out_of_id_order_never_put_two_of_a_thread_in_flight(pg_url: str):
    """The older id commits last: the newer reply is already out, so the older one waits."""
    store = open_store(pg_url)
    slow = psycopg.connect(pg_url, row_factory=dict_row)  # not autocommit: one open transaction
    try:
        older = _request("chat-1", "older")(PostgresTx(slow, load_queries("postgres", to_pyformat)))
        newer = store.run_sync(_request("chat-1", "newer"))
        assert older.delivery.id < newer.delivery.id
        [first] = _claim(store, "a")  # the older reply is not committed: invisible
        assert first.id == newer.delivery.id
        slow.commit()
        # The older reply is the thread's head now, but the newer one is on the wire.
        assert _claim(store, "b") == []
        _deliver(store, first, "a")
        [second] = _claim(store, "b")
        assert second.id == older.delivery.id
    finally:
        slow.close()
        store.close()


def test_requeued_older_reply_waits_for_the_thread_in_flight(store_url: str):
    """An operator re-sends a failed reply while a newer one of its thread is being sent."""
    store = open_store(store_url)
    try:
        first = store.run_sync(_request("chat-1", "first")).delivery
        second = store.run_sync(_request("chat-1", "second")).delivery
        [held] = _claim(store, "a")
        assert held.id == first.id
        assert store.run_sync(tr.finish(tr.Lease(held.id, held.lease_epoch), Status.FAILED, "x"))
        [sending] = _claim(store, "a")
        assert sending.id == second.id
        store.run_sync(tr.requeue(first.id, reason="operator retry"))
        assert _claim(store, "b") == []  # the thread already has a reply on the wire
        _deliver(store, sending, "a")
        [again] = _claim(store, "b")
        assert again.id == first.id and again.start_index == 0
    finally:
        store.close()


def test_requeued_reply_does_not_wait_for_a_dead_workers_lapsed_lease(store_url: str):
    """A lapsed lease does not block the thread: its delivery is picked up after the head."""
    store = open_store(store_url)
    try:
        first = store.run_sync(_request("chat-1", "first")).delivery
        second = store.run_sync(_request("chat-1", "second")).delivery
        [held] = _claim(store, "a")
        store.run_sync(tr.finish(tr.Lease(held.id, held.lease_epoch), Status.FAILED, "x"))
        [dead] = store.run_sync(tr.claim("dead", ["mem"], 10, lease_seconds=0.05))
        assert dead.id == second.id
        store.run_sync(tr.requeue(first.id, reason="operator retry"))
        time.sleep(0.1)  # the dead worker's lease lapses
        [head] = _claim(store, "b")
        assert head.id == first.id  # the older reply goes first, the lapsed one after it
        _deliver(store, head, "b")
        [resumed] = _claim(store, "b")
        assert resumed.id == second.id and resumed.lease_epoch == dead.lease_epoch + 1
    finally:
        store.close()


def test_many_concurrent_claimers_never_hold_two_of_one_thread(pg_url: str):
    """Claimers (each its own connection) race enqueuers that write to the same threads.

    Enqueues hold their transaction open for a moment after taking an id (as a transactional
    outbox does), so replies to one thread often commit out of id order.

    A claimer registers what it holds right after its claim commits and unregisters just
    before its final write, so a second registration for a thread means the database really
    let two deliveries of that thread be in flight together.
    """
    threads = [f"chat-{n}" for n in range(8)]
    enqueuers, per_enqueuer, claimers = 4, 60, 6
    total = enqueuers * per_enqueuer
    lock = threading.Lock()
    holding: dict[str, set[int]] = defaultdict(set)
    violations: list[str] = []
    delivered: list[int] = []
    errors: list[BaseException] = []
    order_in: dict[tuple[int, str], list[int]] = defaultdict(list)
    order_out: dict[str, list[int]] = defaultdict(list)
    open_store(pg_url).close()  # migrate once, before the crowd arrives

    def enqueue(number: int) -> None:
        rng = random.Random(number)
        store = open_store(pg_url, run_migrations=False)
        try:
            for n in range(per_enqueuer):
                thread = rng.choice(threads)
                enqueue_unit = _request(thread, f"e{number}-{n}")
                pause = rng.random() * 0.004

                def transactional_outbox(
                    tx: Tx, unit: EnqueueUnit = enqueue_unit, pause: float = pause
                ) -> Delivery:
                    # The reply's id is taken now; the surrounding work commits a bit later,
                    # so enqueues to one thread commit out of id order now and then.
                    delivery = unit(tx).delivery
                    time.sleep(pause)
                    return delivery

                d = store.run_sync(transactional_outbox)
                order_in[(number, thread)].append(d.id)
        except BaseException as error:
            errors.append(error)
            raise
        finally:
            store.close()

    def claim(number: int) -> None:
        rng = random.Random(1000 + number)
        store = open_store(pg_url, run_migrations=False)
        worker = f"claimer-{number}"
        try:
            while True:
                with lock:
                    if len(delivered) >= total or errors:
                        return
                claimed = _claim(store, worker, limit=rng.randint(1, 4))
                with lock:
                    for d in claimed:
                        if holding[d.thread_id]:
                            violations.append(f"{d.thread_id}: {holding[d.thread_id]} and {d.id}")
                        holding[d.thread_id].add(d.id)
                time.sleep(rng.random() * 0.003)
                for d in claimed:
                    retry = rng.random() < 0.2
                    with lock:
                        holding[d.thread_id].discard(d.id)
                        if not retry:
                            delivered.append(d.id)
                            order_out[d.thread_id].append(d.id)
                    if retry:  # give it back, available at once: it must come round again
                        store.run_sync(
                            tr.release(
                                tr.Lease(d.id, d.lease_epoch),
                                delay_seconds=0.0,
                                refund_attempt=True,
                                error="retry",
                                clear_in_flight=True,
                            )
                        )
                    else:
                        _deliver(store, d, worker)
        except BaseException as error:
            errors.append(error)
            raise
        finally:
            store.close()

    workers = [threading.Thread(target=enqueue, args=(n,)) for n in range(enqueuers)]
    workers += [threading.Thread(target=claim, args=(n,)) for n in range(claimers)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 120
    for w in workers:
        w.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not any(w.is_alive() for w in workers), "claimers did not finish in time"
    assert violations == []
    assert errors == []
    assert sorted(delivered) == sorted({i for ids in order_in.values() for i in ids})
    # FIFO: each enqueuer's replies to one thread go out in the order it enqueued them.
    for (_enqueuer, thread), ids in order_in.items():
        assert [i for i in order_out[thread] if i in set(ids)] == ids
