"""Per-user scoped memory (spec C7), on both stores: every operation stays inside its scope."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relaybox.config import MemoryConfig
from relaybox.memory import (
    History,
    InvalidMemory,
    InvalidScope,
    MemoryAdmin,
    MemoryRouter,
    Notes,
    Scope,
    ScopedMemory,
    VersionConflict,
    WorkingMemoryHandle,
    shard_for,
)
from relaybox.store import Store, open_store

ALICE = Scope("+15550100", "chat-1")
ALICE_OTHER_CHAT = Scope("+15550100", "chat-2")
BOB = Scope("+15550199", "chat-1")  # same chat id as Alice: a group chat
LIMITS = MemoryConfig(max_document_bytes=200, max_note_bytes=50, max_message_bytes=100)


def mem(store: Store, scope: Scope) -> ScopedMemory:
    return ScopedMemory(store, scope, LIMITS)


@pytest.mark.parametrize(
    ("resource", "thread", "message"),
    [
        ("", "chat-1", "scope resource_id must be a non-empty string"),
        ("   ", "chat-1", "scope resource_id must be a non-empty string"),
        ("alice", "", "scope thread_id must be a non-empty string"),
        (None, "chat-1", "scope resource_id must be a string, not NoneType"),
        ("alice", 42, "scope thread_id must be a string, not int"),
        ("a" * 513, "chat-1", "resource_id is 513 characters; the limit is 512"),
        ("ali\x00ce", "chat-1", "contains a NUL character"),
        ("\ud800", "chat-1", "not valid UTF-8"),
    ],
)
def test_a_scope_refuses_missing_or_empty_ids(resource: Any, thread: Any, message: str) -> None:
    with pytest.raises(InvalidScope, match=message):
        Scope(resource, thread)


def test_memory_cannot_be_opened_without_a_scope(store: Store) -> None:
    for not_a_scope in (None, "alice", {"resource_id": "a", "thread_id": "t"}, ("a", "t")):
        with pytest.raises(InvalidScope, match="memory needs a Scope"):
            ScopedMemory(store, not_a_scope)  # type: ignore[arg-type]
    assert Scope.for_chat("+15550100", 42) == Scope("+15550100", "chat-42")
    # The per-kind handles refuse a bare id too: no path around the Scope.
    with pytest.raises(InvalidScope):
        WorkingMemoryHandle(store, "alice", per_thread=False, max_bytes=100)  # type: ignore[arg-type]
    with pytest.raises(InvalidScope):
        History(store, "alice", LIMITS)  # type: ignore[arg-type]
    with pytest.raises(InvalidScope):
        Notes(store, None, LIMITS)  # type: ignore[arg-type]


async def test_working_memory_is_per_person_across_their_chats(store: Store) -> None:
    await mem(store, ALICE).working.merge({"name": "Alice", "city": "Paris"})
    seen_elsewhere = await mem(store, ALICE_OTHER_CHAT).working.get()
    assert seen_elsewhere.document == {"name": "Alice", "city": "Paris"}
    assert seen_elsewhere.version == 1
    bob = await mem(store, BOB).working.get()
    assert bob.document == {} and bob.version == 0 and bob.updated_at is None


async def test_thread_scoped_working_memory_stays_in_its_thread(store: Store) -> None:
    await mem(store, ALICE).thread_working.merge({"topic": "flights"})
    await mem(store, ALICE_OTHER_CHAT).thread_working.merge({"topic": "dinner"})
    await mem(store, BOB).thread_working.merge({"topic": "taxes"})
    assert (await mem(store, ALICE).thread_working.get()).document == {"topic": "flights"}
    assert (await mem(store, ALICE_OTHER_CHAT).thread_working.get()).document == {"topic": "dinner"}
    assert (await mem(store, BOB).thread_working.get()).document == {"topic": "taxes"}
    assert (await mem(store, ALICE).working.get()).version == 0  # the person's own: untouched


async def test_update_applies_a_function_and_versions_every_write(store: Store) -> None:
    working = mem(store, ALICE).working
    first = await working.update(lambda doc: {**doc, "visits": doc.get("visits", 0) + 1})
    second = await working.update(lambda doc: {**doc, "visits": doc["visits"] + 1})
    assert (first.version, second.version) == (1, 2)
    assert second.document == {"visits": 2}
    assert (await working.get()) == second


async def test_merge_follows_json_merge_patch(store: Store) -> None:
    working = mem(store, ALICE).working
    await working.merge({"prefs": {"seat": "window", "meal": "veg"}, "city": "Paris"})
    merged = await working.merge({"prefs": {"meal": None, "lang": "fr"}, "city": None})
    assert merged.document == {"prefs": {"seat": "window", "lang": "fr"}}


async def test_a_failing_update_leaves_the_old_version(store: Store) -> None:
    working = mem(store, ALICE).working
    await working.merge({"count": 1})

    def broken(doc: dict[str, Any]) -> dict[str, Any]:
        doc["count"] = 99
        raise RuntimeError("summariser crashed")

    with pytest.raises(RuntimeError, match="summariser crashed"):
        await working.update(broken)
    with pytest.raises(InvalidMemory, match="returned None"):
        await working.update(lambda doc: None)  # type: ignore[arg-type,return-value]
    after = await working.get()
    assert after.document == {"count": 1} and after.version == 1


async def test_compare_and_swap_refuses_a_stale_version(store: Store) -> None:
    working = mem(store, ALICE).working
    read = await working.merge({"summary": "v1"})
    await working.merge({"other": "concurrent write"})
    with pytest.raises(VersionConflict, match="is at version 2, not 1") as conflict:
        await working.replace({"summary": "v2 from a slow LLM"}, expected_version=read.version)
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    current = await working.get()
    assert current.document == {"summary": "v1", "other": "concurrent write"}
    done = await working.replace({**current.document, "summary": "v2"}, expected_version=2)
    assert done.version == 3 and done.document["summary"] == "v2"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"x": float("nan")}, "working memory.x is nan; JSON numbers must be finite"),
        ({"tags": {"a"}}, "working memory.tags is a set"),
        ({1: "one"}, "has a key 1 of type int"),
        ({"when": object()}, "working memory.when is a object"),
        (["not", "an", "object"], "must be a JSON object (a dict), not list"),
        ({"big": "x" * 300}, "bytes as JSON; the limit is 200 (memory.max_document_bytes)"),
    ],
)
async def test_bad_documents_are_refused_and_nothing_is_stored(
    store: Store, document: Any, message: str
) -> None:
    working = mem(store, ALICE).working
    await working.merge({"kept": True})
    with pytest.raises(InvalidMemory, match=re.escape(message)):
        await working.update(lambda doc: document)
    if isinstance(document, dict):
        patch_message = message.replace("working memory", "merge patch")
        with pytest.raises(InvalidMemory, match=re.escape(patch_message)):
            await working.merge(document)
    with pytest.raises(InvalidMemory):
        await working.replace(document, expected_version=1)
    assert (await working.get()).document == {"kept": True}
    assert (await working.get()).version == 1


async def test_update_refuses_an_async_function(store: Store) -> None:
    async def summarise(doc: dict[str, Any]) -> dict[str, Any]:
        return doc

    with pytest.raises(InvalidMemory, match="takes a plain function"):
        await mem(store, ALICE).working.update(summarise)  # type: ignore[arg-type]


async def test_history_is_per_person_and_thread(store: Store) -> None:
    alice, alice_elsewhere, bob = mem(store, ALICE), mem(store, ALICE_OTHER_CHAT), mem(store, BOB)
    for n in range(5):
        await alice.history.append("user", f"alice {n}")
    await alice.history.append("assistant", "hello alice", metadata={"model": "m-1"})
    await alice_elsewhere.history.append("user", "alice in chat 2")
    await bob.history.append("user", "bob in the same group chat")
    recent = await alice.history.recent(3)
    assert [m.content for m in recent] == ["alice 3", "alice 4", "hello alice"]
    assert recent[-1].role == "assistant" and recent[-1].metadata == {"model": "m-1"}
    assert [m.content for m in await alice_elsewhere.history.recent()] == ["alice in chat 2"]
    assert [m.content for m in await bob.history.recent()] == ["bob in the same group chat"]


async def test_history_by_time(store: Store) -> None:
    history = mem(store, ALICE).history
    first = await history.append("user", "before")
    await asyncio.sleep(0.02)
    cut = time.time()
    await asyncio.sleep(0.02)
    second = await history.append("user", "after")
    assert [m.id for m in await history.between(cut)] == [second.id]
    assert [m.id for m in await history.between(0, cut)] == [first.id]
    assert [m.id for m in await history.between(0, limit=1)] == [first.id]
    await mem(store, BOB).history.append("user", "bob, later")
    assert [m.id for m in await history.between(cut)] == [second.id]


async def test_history_entries_hold_structured_content_and_pop_and_clear_stay_in_scope(
    store: Store,
) -> None:
    alice, bob = mem(store, ALICE).history, mem(store, BOB).history
    call = {"type": "tool_call", "name": "book", "arguments": {"people": 2}, "id": "c1"}
    await alice.extend([("user", "book for two"), ("assistant", call), ("tool", [1, "ok"], None)])
    await bob.append("user", "bob's own words")
    entries = await alice.recent(10)
    assert [(m.role, m.content, m.structured) for m in entries] == [
        ("user", "book for two", False),
        ("assistant", call, True),
        ("tool", [1, "ok"], True),
    ]
    popped = await alice.pop()
    assert popped is not None and popped.content == [1, "ok"]
    assert [m.content for m in await alice.recent(10)] == ["book for two", call]
    assert await alice.clear() == 2
    assert await alice.recent(10) == [] and await alice.pop() is None
    assert [m.content for m in await bob.recent(10)] == ["bob's own words"]
    with pytest.raises(InvalidMemory, match=r"message content\.x is a set"):
        await alice.append("tool", {"x": {1}})


async def test_notes_belong_to_the_person(store: Store) -> None:
    await mem(store, ALICE).notes.add("prefers window seats")
    await mem(store, ALICE_OTHER_CHAT).notes.add("vegetarian", metadata={"confidence": 0.9})
    await mem(store, BOB).notes.add("allergic to nuts")
    notes = await mem(store, ALICE).notes.recent()
    assert [(n.text, n.thread_id) for n in notes] == [
        ("prefers window seats", "chat-1"),
        ("vegetarian", "chat-2"),
    ]
    assert notes[1].metadata == {"confidence": 0.9}
    assert [n.text for n in await mem(store, BOB).notes.recent()] == ["allergic to nuts"]
    assert [n.text for n in await mem(store, ALICE).notes.recent(1)] == ["vegetarian"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.history.append("user", ""), "message is empty"),
        (lambda m: m.history.append("", "hi"), "role must be a non-empty string"),
        (lambda m: m.history.append("user", "x" * 101), "101 bytes; the limit is 100"),
        (lambda m: m.history.append("user", b"hi"), "message must be text, not bytes"),
        (lambda m: m.history.append("user", "nul\x00"), "contains a NUL character"),
        (lambda m: m.history.append("user", "hi", metadata={"x": {1}}), "metadata.x is a set"),
        (lambda m: m.history.append("user", "hi", metadata=[1]), "metadata must be a JSON object"),
        (lambda m: m.history.recent(0), "limit must be a whole number of at least 1"),
        (lambda m: m.history.between(float("nan")), "since must be a finite number"),
        (lambda m: m.notes.add("   "), "note is empty"),
        (lambda m: m.notes.add("é" * 26), "note is 52 bytes; the limit is 50"),
        (lambda m: m.notes.recent(-1), "limit must be a whole number"),
    ],
)
async def test_bad_notes_and_messages_are_refused_and_nothing_is_stored(
    store: Store, call: Any, message: str
) -> None:
    memory = mem(store, ALICE)
    with pytest.raises(InvalidMemory, match=message):
        await call(memory)
    assert await memory.history.recent() == [] and await memory.notes.recent() == []


async def test_the_admin_view_shows_one_person_and_nobody_else(store: Store) -> None:
    await mem(store, ALICE).working.merge({"name": "Alice"})
    await mem(store, ALICE_OTHER_CHAT).thread_working.merge({"topic": "dinner"})
    await mem(store, ALICE).notes.add("prefers window seats")
    await mem(store, ALICE).history.append("user", "hi")
    await mem(store, ALICE_OTHER_CHAT).history.append("user", "hi again")
    await mem(store, BOB).working.merge({"name": "Bob"})
    await mem(store, BOB).notes.add("allergic to nuts")
    admin = MemoryAdmin(store)
    shown = await admin.show(ALICE.resource_id)
    assert shown.working is not None and shown.working.document == {"name": "Alice"}
    assert {t: w.document for t, w in shown.thread_working.items()} == {
        "chat-2": {"topic": "dinner"}
    }
    assert [n.text for n in shown.notes] == ["prefers window seats"]
    assert sorted((t.thread_id, t.messages) for t in shown.threads) == [
        ("chat-1", 1),
        ("chat-2", 1),
    ]
    assert "Bob" not in json.dumps(shown.to_json()) and "nuts" not in json.dumps(shown.to_json())
    people = {r.resource_id: r for r in await admin.resources()}
    assert set(people) == {ALICE.resource_id, BOB.resource_id}
    assert (people[ALICE.resource_id].documents, people[ALICE.resource_id].notes) == (2, 1)
    assert people[ALICE.resource_id].messages == 2
    forgotten = await admin.forget(ALICE.resource_id)
    assert forgotten == {"documents": 2, "notes": 1, "messages": 2}
    assert [r.resource_id for r in await admin.resources()] == [BOB.resource_id]
    assert (await mem(store, BOB).working.get()).document == {"name": "Bob"}
    with pytest.raises(InvalidScope, match="must be a non-empty string"):
        await admin.show("")


def test_the_shard_of_a_person_is_stable_and_order_free() -> None:
    names = ["mem-a", "mem-b", "mem-c"]
    people = [f"+1555{n:07d}" for n in range(300)]
    placed = {p: shard_for(p, names) for p in people}
    assert placed == {p: shard_for(p, list(reversed(names))) for p in people}
    assert set(placed.values()) == set(names)  # all shards get people
    # Another process (another hash() salt) places everyone the same way.
    code = (
        "import json, sys; from relaybox.memory import shard_for;"
        "print(json.dumps({p: shard_for(p, ['mem-c', 'mem-a', 'mem-b'])"
        " for p in json.loads(sys.stdin.read())}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(people),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(other.stdout) == placed
    # Adding a shard moves only the people who land on the new one.
    grown = {p: shard_for(p, [*names, "mem-d"]) for p in people}
    moved = [p for p in people if grown[p] != placed[p]]
    assert moved and all(grown[p] == "mem-d" for p in moved)
    assert len(moved) < len(people) / 2


@pytest.fixture
def shard_stores(sqlite_url: str, pg_url: str, tmp_path: Any) -> Iterator[dict[str, Store]]:
    stores = {
        "sqlite-1": open_store(sqlite_url),
        "sqlite-2": open_store(f"sqlite:///{tmp_path}/second.db"),
        "postgres": open_store(pg_url),
    }
    yield stores
    for s in stores.values():
        s.close()


async def test_the_router_keeps_every_operation_of_a_person_on_one_shard(
    shard_stores: dict[str, Store],
) -> None:
    router = MemoryRouter(shard_stores, LIMITS)
    people = [f"user-{n}@example.com" for n in range(12)]
    for person in people:
        memory = router.memory(Scope(person, "chat-1"))
        await memory.working.merge({"me": person})
        await memory.history.append("user", f"from {person}")
        await memory.notes.add(f"note on {person}")
    for name, store in shard_stores.items():
        admin = MemoryAdmin(store)
        here = {r.resource_id for r in await admin.resources()}
        assert here == {p for p in people if router.shard_name(p) == name}
    for person in people:
        shown = await router.admin_for(person).show(person)
        assert shown.working is not None and shown.working.document == {"me": person}
        assert [n.text for n in shown.notes] == [f"note on {person}"]
    with pytest.raises(InvalidScope):
        router.memory("user-1@example.com")  # type: ignore[arg-type]


def test_memory_cli_shows_one_person(store_url: str) -> None:
    store = open_store(store_url)
    try:
        asyncio.run(_fill(store))
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "relaybox", "--db", store_url, "memory", *args],
            capture_output=True,
            text=True,
            env={**env, "COLUMNS": "200"},
            timeout=60,
        )

    shown = cli("show", "--resource", ALICE.resource_id, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["working"]["document"] == {"name": "Alice"}
    assert [n["text"] for n in data["notes"]] == ["prefers window seats", "[red]literal[/red]"]
    assert "Bob" not in shown.stdout
    human = cli("show", "--resource", ALICE.resource_id)
    assert "prefers window seats" in human.stdout and "Bob" not in human.stdout
    assert "[red]literal[/red]" in human.stdout  # user text is never read as markup
    listed = cli("resources", "--json")
    assert {r["resource_id"] for r in json.loads(listed.stdout)} == {
        ALICE.resource_id,
        BOB.resource_id,
    }
    refused = cli("forget", "--resource", BOB.resource_id)
    assert refused.returncode == 1 and "add --yes to confirm" in refused.stderr
    empty = cli("show", "--resource", "")
    assert empty.returncode == 1 and "resource_id must be a non-empty string" in empty.stderr
    assert "Traceback" not in empty.stderr
    gone = cli("forget", "--resource", BOB.resource_id, "--yes", "--json")
    assert json.loads(gone.stdout)["deleted"] == {"documents": 1, "notes": 0, "messages": 0}


async def _fill(store: Store) -> None:
    await mem(store, ALICE).working.merge({"name": "Alice"})
    await mem(store, ALICE).notes.add("prefers window seats")
    await mem(store, ALICE).notes.add("[red]literal[/red]")
    await mem(store, BOB).working.merge({"name": "Bob"})
