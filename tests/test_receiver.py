"""Receiver-side helpers: the SQLite Deduplicator and the LoopbackReceiver HTTP server."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest

from relaybox.dedup import Deduplicator
from relaybox.testing.loopback import LoopbackReceiver, json_response

# --- Deduplicator --------------------------------------------------------------------------


def test_claim_first_then_duplicate_returns_first_message_id() -> None:
    with Deduplicator() as dedup:
        assert dedup.claim("k1", lambda: "m1") == (True, "m1")
        assert dedup.claim("k1", lambda: "m2") == (False, "m1")
        assert dedup.claim("k2", lambda: "m3") == (True, "m3")
        assert dedup.get("k1") == "m1"
        assert dedup.get("nope") is None
        assert len(dedup) == 2


def test_claim_without_factory_makes_an_id() -> None:
    with Deduplicator() as dedup:
        first, message_id = dedup.claim("k")
        assert first and message_id
        assert dedup.claim("k") == (False, message_id)


def test_factory_must_return_str() -> None:
    with Deduplicator() as dedup:
        with pytest.raises(TypeError):
            dedup.claim("k", lambda: 5)  # type: ignore[arg-type,return-value]
        assert dedup.get("k") is None


@pytest.mark.parametrize("where", ["memory", "file"])
def test_concurrent_claims_of_one_key_have_exactly_one_winner(tmp_path: Path, where: str) -> None:
    path = ":memory:" if where == "memory" else str(tmp_path / "keys.db")
    threads = 32
    counter = itertools.count()
    barrier = threading.Barrier(threads)
    with Deduplicator(path) as dedup:

        def claim(_: int) -> tuple[bool, str]:
            barrier.wait()
            return dedup.claim("same-key", lambda: f"m{next(counter)}")

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(claim, range(threads)))
    assert sum(first for first, _ in results) == 1
    assert len({message_id for _, message_id in results}) == 1


def test_concurrent_claims_from_separate_instances_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    instances = [Deduplicator(path) for _ in range(8)]
    barrier = threading.Barrier(len(instances))

    def claim_all(dedup: Deduplicator) -> list[tuple[bool, str]]:
        barrier.wait()
        return [dedup.claim(f"k{i}", partial(str, f"{id(dedup)}-{i}")) for i in range(50)]

    with ThreadPoolExecutor(len(instances)) as pool:
        results = list(pool.map(claim_all, instances))
    for dedup in instances:
        dedup.close()
    for i in range(50):
        claims = [per_instance[i] for per_instance in results]
        assert sum(first for first, _ in claims) == 1
        assert len({message_id for _, message_id in claims}) == 1


def _claim_in_process(path: str) -> list[tuple[bool, str]]:
    with Deduplicator(path) as dedup:
        return [dedup.claim(f"k{i}") for i in range(40)]


def test_concurrent_claims_from_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.db")
    Deduplicator(path).close()  # create the schema up front
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_claim_in_process, [path] * 4))
    for i in range(40):
        claims = [per_process[i] for per_process in results]
        assert sum(first for first, _ in claims) == 1
        assert len({message_id for _, message_id in claims}) == 1


def test_keys_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with Deduplicator(path) as dedup:
        assert dedup.claim("k1", lambda: "m1") == (True, "m1")
    with Deduplicator(str(path)) as reopened:
        assert reopened.get("k1") == "m1"
        assert reopened.claim("k1", lambda: "other") == (False, "m1")


def test_forget_older_than(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr("relaybox.dedup.time.time", lambda: now[0])
    with Deduplicator() as dedup:
        dedup.claim("old", lambda: "m-old")
        now[0] += 100
        dedup.claim("new", lambda: "m-new")
        now[0] += 10
        assert dedup.forget_older_than(50) == 1
        assert dedup.get("old") is None
        assert dedup.get("new") == "m-new"
        assert dedup.forget_older_than(50) == 0
        assert dedup.claim("old", lambda: "m-again") == (True, "m-again")


# --- LoopbackReceiver ----------------------------------------------------------------------


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(hang_seconds=5.0) as receiver:
        yield receiver


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def post(client: httpx.Client, rx: LoopbackReceiver, guid: str, text: str = "hi") -> httpx.Response:
    return client.post(
        rx.url,
        json={"guid": guid, "thread_id": "t", "text": text},
        headers={"Idempotency-Key": guid},
    )


def test_urls(rx: LoopbackReceiver) -> None:
    assert rx.url == f"http://127.0.0.1:{rx.port}/send"
    assert rx.status_url == f"http://127.0.0.1:{rx.port}/status"
    assert rx.port > 0


def test_dedup_on_first_copy_200_duplicate_409(rx: LoopbackReceiver, client: httpx.Client) -> None:
    first = post(client, rx, "g1", "one")
    again = post(client, rx, "g1", "one")
    other = post(client, rx, "g2", "two")
    assert first.status_code == 200 and other.status_code == 200
    assert again.status_code == 409
    assert again.json()["message_id"] == first.json()["message_id"]
    assert len(rx.wire) == 3
    assert [body["guid"] for body in rx.seen] == ["g1", "g2"]
    assert rx.texts() == ["one", "two"]
    assert rx.duplicates_on_wire == 1


def test_dedup_off_surfaces_duplicates_again(client: httpx.Client) -> None:
    with LoopbackReceiver(dedup=False) as rx:
        responses = [post(client, rx, "g1") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.json()["message_id"] for r in responses}) == 3
    assert len(rx.wire) == 3 and len(rx.seen) == 3
    assert rx.duplicates_on_wire == 2


def test_status_endpoint(rx: LoopbackReceiver, client: httpx.Client) -> None:
    assert client.get(rx.status_url, params={"guid": "g1"}).status_code == 404
    message_id = post(client, rx, "g1").json()["message_id"]
    found = client.get(rx.status_url, params={"guid": "g1"})
    assert found.status_code == 200
    assert found.json() == {"surfaced": True, "message_id": message_id}
    assert client.get(rx.status_url).status_code == 400
    assert rx.status_requests == ["g1", "g1"]


def test_shared_persistent_deduplicator(tmp_path: Path, client: httpx.Client) -> None:
    with Deduplicator(tmp_path / "keys.db") as dedup:
        with LoopbackReceiver(deduplicator=dedup) as rx1:
            assert post(client, rx1, "g1").status_code == 200
        with LoopbackReceiver(deduplicator=dedup) as rx2:  # "restarted" receiver remembers
            assert post(client, rx2, "g1").status_code == 409
            assert rx2.seen == []
        assert dedup.get("g1") is not None  # not closed by the receivers


def test_bad_requests(rx: LoopbackReceiver, client: httpx.Client) -> None:
    assert client.post(rx.url, content=b"not json").status_code == 400
    assert client.post(rx.url, json=[1, 2]).status_code == 400
    assert client.post(rx.url, json={"text": "no key"}).status_code == 400
    assert client.get(rx.url).status_code == 404
    assert client.post(f"http://127.0.0.1:{rx.port}/other", json={}).status_code == 404
    assert rx.seen == []
    # A body guid is used when the Idempotency-Key header is missing.
    assert client.post(rx.url, json={"guid": "g9"}).status_code == 200


def test_behaviour_answers_instead_and_surfaces_nothing(
    rx: LoopbackReceiver, client: httpx.Client
) -> None:
    rx.behaviour = lambda body: (
        json_response(429, {"error": "slow"}, {"Retry-After": "3"})
        if body["guid"] == "g1"
        else None
    )
    limited = post(client, rx, "g1")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert post(client, rx, "g2").status_code == 200
    assert [b["guid"] for b in rx.wire] == ["g1", "g2"]
    assert [b["guid"] for b in rx.seen] == ["g2"]


def test_broken_behaviour_answers_500(rx: LoopbackReceiver, client: httpx.Client) -> None:
    def boom(_body: object) -> None:
        raise RuntimeError("bug in test hook")

    rx.behaviour = boom
    response = post(client, rx, "g1")
    assert response.status_code == 500 and "bug in test hook" in response.text
    assert len(rx.errors) == 1


def test_fail_next(rx: LoopbackReceiver, client: httpx.Client) -> None:
    rx.fail_next(2, 503, {"Retry-After": "1"})
    assert post(client, rx, "g1").status_code == 503
    assert post(client, rx, "g1").status_code == 503
    assert post(client, rx, "g1").status_code == 200
    assert len(rx.wire) == 3 and len(rx.seen) == 1


def test_hang_ends_on_client_timeout_and_on_stop(client: httpx.Client) -> None:
    rx = LoopbackReceiver(hang_seconds=30.0).start()
    rx.behaviour = lambda _body: "hang"
    with pytest.raises(httpx.ReadTimeout):
        client.post(rx.url, json={"guid": "g1"}, timeout=0.2)

    outcome: list[BaseException] = []

    def patient_post() -> None:
        try:
            client.post(rx.url, json={"guid": "g2"}, timeout=20)
        except httpx.HTTPError as error:
            outcome.append(error)

    thread = threading.Thread(target=patient_post)
    thread.start()
    assert rx.wait_for(lambda: len(rx.wire) == 2, timeout=5)
    started = time.monotonic()
    rx.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2.0
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.RemoteProtocolError)
    assert rx.seen == []


def test_surface_and_hang_surfaces_without_answering(
    rx: LoopbackReceiver, client: httpx.Client
) -> None:
    rx.behaviour = lambda _body: "surface_and_hang"
    with pytest.raises(httpx.ReadTimeout):
        client.post(rx.url, json={"guid": "g1"}, timeout=0.2)
    assert [b["guid"] for b in rx.seen] == ["g1"]
    assert client.get(rx.status_url, params={"guid": "g1"}).status_code == 200


def test_hold_after_and_release(rx: LoopbackReceiver, client: httpx.Client) -> None:
    rx.hold_after(1)
    assert post(client, rx, "g1").status_code == 200
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(post(client, rx, "g2").status_code))
    thread.start()
    assert rx.wait_for(lambda: len(rx.wire) == 2, timeout=5)
    assert not rx.wait_until_seen(2, timeout=0.2)  # held
    rx.release()
    assert rx.wait_until_seen(2, timeout=5)
    thread.join(timeout=5)
    assert statuses == [200]


async def test_async_wait_helpers(rx: LoopbackReceiver) -> None:
    async with httpx.AsyncClient() as http:
        assert not await rx.wait_until_seen_async(1, timeout=0.05)
        await http.post(rx.url, json={"guid": "g1"})
        assert await rx.wait_until_seen_async(1, timeout=1)
        assert await rx.wait_for_async(lambda: rx.duplicates_on_wire == 0, timeout=1)


def test_many_concurrent_senders(rx: LoopbackReceiver, client: httpx.Client) -> None:
    def send(i: int) -> int:
        return post(client, rx, f"g{i % 25}").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(100)))
    assert statuses.count(200) == 25 and statuses.count(409) == 75
    assert len(rx.seen) == 25 and len(rx.wire) == 100 and rx.duplicates_on_wire == 75


def test_stop_is_idempotent_and_start_twice_fails() -> None:
    rx = LoopbackReceiver().start()
    with pytest.raises(RuntimeError):
        rx.start()
    rx.stop()
    rx.stop()
