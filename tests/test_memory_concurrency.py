"""Many worker processes, many users, one store: no lost update, no data in the wrong scope.

Each process updates every user's working memory many times, concurrently across users
(asyncio tasks inside the process, so group commit batches several users' row locks in one
transaction, which is what provokes PostgreSQL deadlocks and SQLite lock waits). Half of the
writes go through ``update`` (atomic, in one transaction), the other half through
``replace`` with a compare-and-swap retry loop; each process also appends to every user's
history.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from relaybox.memory import Scope, ScopedMemory
from relaybox.store import open_store

PROCESSES = 4
USERS = 8
UPDATES = 6  # per process, per user, per write path

WORKER = """
import asyncio, os, sys, time
from relaybox.memory import Scope, ScopedMemory, VersionConflict
from relaybox.store import open_store

url, proc, go = sys.argv[1], sys.argv[2], sys.argv[5]
users, updates = int(sys.argv[3]), int(sys.argv[4])

def append_token(token, user):
    def change(doc):
        return {**doc, "owner": user, "writes": [*doc.get("writes", []), token]}
    return change

async def one_user(store, user):
    memory = ScopedMemory(store, Scope(user, f"chat-{user}"))
    for k in range(updates):
        await memory.working.update(append_token(f"{user}|{proc}|u{k}", user))
        while True:  # compare-and-swap, retried on conflict
            current = await memory.thread_working.get()
            doc = current.document
            new = {**doc, "owner": user, "writes": [*doc.get("writes", []), f"{user}|{proc}|c{k}"]}
            try:
                await memory.thread_working.replace(new, expected_version=current.version)
                break
            except VersionConflict:
                await asyncio.sleep(0.001)
        await memory.history.append("user", f"{user}|{proc}|h{k}")

async def main():
    store = open_store(url)
    while not os.path.exists(go):
        time.sleep(0.005)
    await asyncio.gather(*(one_user(store, f"user-{n}") for n in range(users)))
    store.close()

asyncio.run(main())
"""


def test_many_processes_updating_many_users_lose_nothing_and_leak_nothing(
    store_url: str, tmp_path: Path
) -> None:
    open_store(store_url).close()  # migrate before the workers start
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store_url, f"p{n}", str(USERS), str(UPDATES), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    time.sleep(0.5)  # let every process import and connect, then start them together
    go.touch()
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr

    store = open_store(store_url)
    try:
        asyncio.run(_check(store))
    finally:
        store.close()


async def _check(store: object) -> None:
    users = [f"user-{n}" for n in range(USERS)]
    for user in users:
        memory = ScopedMemory(store, Scope(user, f"chat-{user}"))  # type: ignore[arg-type]
        for path, handle in (("u", memory.working), ("c", memory.thread_working)):
            stored = await handle.get()
            expected = sorted(
                f"{user}|p{p}|{path}{k}" for p in range(PROCESSES) for k in range(UPDATES)
            )
            assert sorted(stored.document["writes"]) == expected, (user, path)
            assert stored.document["owner"] == user
            assert stored.version == PROCESSES * UPDATES
        history = await memory.history.recent(1000)
        assert sorted(m.content for m in history) == sorted(
            f"{user}|p{p}|h{k}" for p in range(PROCESSES) for k in range(UPDATES)
        )
        per_process = {  # each process appended its own messages in order
            p: [m.content for m in history if m.content.split("|")[1] == f"p{p}"]
            for p in range(PROCESSES)
        }
        for p, contents in per_process.items():
            assert contents == [f"{user}|p{p}|h{k}" for k in range(UPDATES)]
