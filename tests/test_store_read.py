"""The read path: reads beside the writer, and read-only opening for inspection.

Reads run on connections of their own, so a read is answered while the writer thread is busy
(SQLite in WAL mode, PostgreSQL a second connection). A store opened read-only never creates,
migrates or writes anything, and says clearly what it found instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from relaybox.errors import (
    NotARelayboxStore,
    SchemaMismatch,
    StoreNotFound,
    StoreReadOnly,
    StoreUnavailable,
)
from relaybox.store import Tx, open_store
from relaybox.store.migrations import available_migrations


def _count_migrations(tx: Tx) -> int:
    return len(tx.fetch_all("applied_migrations"))


def test_a_read_is_answered_while_the_writer_is_busy(store_url: str) -> None:
    store = open_store(store_url)
    inside = threading.Event()
    release = threading.Event()

    def slow_write(tx: Tx) -> None:
        tx.execute("record_migration", {"version": 9_000, "name": "held", "now": 0.0})
        inside.set()
        assert release.wait(30)

    try:
        pending = store.submit(slow_write)
        assert inside.wait(30)
        # The writer holds its transaction open; a read still answers, from the last commit.
        before = store.read_sync(_count_migrations)
        assert before == len(available_migrations(store.dialect))
        release.set()
        pending.result(30)
        assert store.read_sync(_count_migrations) == before + 1  # a resolved write is seen
    finally:
        release.set()
        store.close()


def test_a_read_unit_cannot_write(store_url: str) -> None:
    store = open_store(store_url)
    try:

        def sneaky(tx: Tx) -> None:
            tx.execute("record_migration", {"version": 9_001, "name": "sneaky", "now": 0.0})

        with pytest.raises(Exception, match=r"(?i)read.?only|readonly"):
            store.read_sync(sneaky)
        assert store.read_sync(_count_migrations) == len(available_migrations(store.dialect))
    finally:
        store.close()


def test_read_only_store_refuses_writes_and_reads(store_url: str) -> None:
    open_store(store_url).close()
    store = open_store(store_url, read_only=True)
    try:
        assert store.read_sync(_count_migrations) == len(available_migrations(store.dialect))
        with pytest.raises(StoreReadOnly, match="opened read-only"):
            store.run_sync(_count_migrations)
    finally:
        store.close()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(StoreNotFound, match=f"no relaybox database at {path}"):
        open_store(f"sqlite:///{path}", read_only=True)
    assert list(tmp_path.iterdir()) == []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unrelated_sqlite_file_is_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before, stat = _digest(path), path.stat()
    with pytest.raises(NotARelayboxStore, match="not a relaybox database"):
        open_store(f"sqlite:///{path}", read_only=True)
    assert _digest(path) == before and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    with pytest.raises(NotARelayboxStore, match="not a relaybox database"):
        open_store(f"sqlite:///{text}", read_only=True)
    assert text.read_text() == "not a database at all\n" * 100


def test_postgres_schema_without_relaybox_is_not_touched(pg_url: str) -> None:
    with pytest.raises(NotARelayboxStore, match="not a relaybox database"):
        open_store(pg_url, read_only=True)
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT to_regclass('relaybox_migrations') IS NULL").fetchone()
        assert row == (True,)


def _remove_version(url: str, version: int | None, add: int | None = None) -> None:
    store = open_store(url)
    try:

        def unit(tx: Tx) -> None:
            if version is not None:
                tx.execute_script(f"DELETE FROM relaybox_migrations WHERE version = {version}")
            if add is not None:
                tx.execute("record_migration", {"version": add, "name": "future", "now": 0.0})

        store.run_sync(unit)
    finally:
        store.close()


def test_older_schema_names_the_missing_migration(store_url: str) -> None:
    latest = available_migrations("sqlite")[-1]
    _remove_version(store_url, latest.version)
    with pytest.raises(
        SchemaMismatch, match=f"needs migration.*{latest.version:04d}_{latest.name}.*migrate"
    ):
        open_store(store_url, read_only=True)
    # Inspection did not migrate: the version is still missing.
    store = open_store(store_url, run_migrations=False)
    try:
        applied = {
            int(r["version"])
            for r in store.read_sync(lambda tx: tx.fetch_all("applied_migrations"))
        }
        assert latest.version not in applied
    finally:
        store.close()


def test_newer_schema_says_upgrade_relaybox(store_url: str) -> None:
    _remove_version(store_url, None, add=9_999)
    with pytest.raises(SchemaMismatch, match=r"9999.*upgrade relaybox"):
        open_store(store_url, read_only=True)


def test_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match="cannot open store"):
        open_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", read_only=True)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _unshare_works(), reason="needs unprivileged mount namespaces (unshare -rm)"
)
def test_store_on_a_read_only_filesystem_can_be_inspected(tmp_path: Path) -> None:
    """The store's directory is bind-mounted read-only in a private mount namespace."""
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data}/relaybox.db"
    store = open_store(url)
    store.close()  # the last connection removes -wal and -shm, as after a clean shutdown
    before = _digest(data / "relaybox.db")
    script = (
        f"mount --bind {data} {data} && mount -o remount,bind,ro {data} && "
        f"touch {data}/probe 2>/dev/null && echo writable; "
        f"{sys.executable} -m relaybox --db {url} deliveries list --json"
    )
    run = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "writable" not in run.stdout, "the bind mount was not read-only"
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]" and "Traceback" not in run.stderr
    assert _digest(data / "relaybox.db") == before
