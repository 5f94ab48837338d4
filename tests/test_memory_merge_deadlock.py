"""4 processes merge into the same 8 people's working memory at once, 50 merges per person.

Group commit puts several scopes' row locks in one transaction; before the store ordered a
batch's row locks, batches of different processes locked in opposite orders and PostgreSQL
deadlocked hundreds of times (some writes failed after 8 retries). Now every write lands, on
both stores, and not one unit had to be retried for a lock conflict. The same scenario is
measured by ``benchmarks/memory_merges.py`` (writes/s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from relaybox.memory import Scope, ScopedMemory
from relaybox.store import Tx, open_store
from relaybox.store.base import Store, locking

PROCESSES, SCOPES, MERGES = 4, 8, 50

CHILD = """
import asyncio, json, logging, os, sys, time
from relaybox.memory import Scope, ScopedMemory
from relaybox.store import open_store

url, proc, go = sys.argv[1], sys.argv[2], sys.argv[3]
scopes, merges = int(sys.argv[4]), int(sys.argv[5])
conflicts = []

class Count(logging.Handler):
    def emit(self, record):
        if "lock conflict" in record.getMessage():
            conflicts.append(record.getMessage())

logging.getLogger("relaybox.store").addHandler(Count())
logging.getLogger("relaybox.store").setLevel(logging.INFO)

async def one_scope(store, n):
    memory = ScopedMemory(store, Scope(f"user-{n}", f"chat-{n}"))
    for k in range(merges):
        await memory.working.merge({f"p{proc}": k + 1})

async def main():
    store = open_store(url)
    while not os.path.exists(go):
        time.sleep(0.002)
    await asyncio.gather(*(one_scope(store, n) for n in range(scopes)))
    store.close()
    print(json.dumps({"conflicts": len(conflicts)}))

asyncio.run(main())
"""


async def test_concurrent_merges_into_shared_scopes_all_land_without_lock_conflicts(
    store_url: str, tmp_path: Path
) -> None:
    open_store(store_url).close()
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, store_url, str(p), str(go), str(SCOPES), str(MERGES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    try:
        go.write_text("go")
        reports = []
        for child in children:
            out, err = child.communicate(timeout=240)
            assert child.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [r["conflicts"] for r in reports] == [0] * PROCESSES
    store = open_store(store_url)
    try:
        for n in range(SCOPES):
            memory = ScopedMemory(store, Scope(f"user-{n}", f"chat-{n}"))
            current = await memory.working.get()
            assert current.version == PROCESSES * MERGES
            assert current.document == {f"p{p}": MERGES for p in range(PROCESSES)}
    finally:
        store.close()


def test_a_batch_runs_its_locking_units_in_key_order(sqlite_url: str) -> None:
    """The mechanism: marked units of one batch run in lock-key order, in their own slots."""
    store = open_store(sqlite_url)
    order: list[str] = []

    def unit(name: str):  # type: ignore[no-untyped-def]
        def run(tx: Tx) -> str:
            order.append(name)
            return name

        return run

    try:
        hold = _hold_writer(store)
        futures = [
            store.submit(locking("k-c", unit("c"))),
            store.submit(unit("plain-1")),
            store.submit(locking("k-a", unit("a1"))),
            store.submit(locking("k-b", unit("b"))),
            store.submit(unit("plain-2")),
            store.submit(locking("k-a", unit("a2"))),
        ]
        hold.set()
        assert [f.result(10) for f in futures] == ["c", "plain-1", "a1", "b", "plain-2", "a2"]
        assert order == ["a1", "plain-1", "a2", "b", "plain-2", "c"]
    finally:
        store.close()


def _hold_writer(store: Store):  # type: ignore[no-untyped-def]
    """Keep the writer busy until the returned event is set, so the next units form one batch."""
    import threading

    inside, release = threading.Event(), threading.Event()

    def block(tx: Tx) -> str:
        inside.set()
        release.wait(10)
        return "held"

    store.submit(block)
    assert inside.wait(10)
    return release
