"""Versioned schema migrations, one numbered SQL file per step and per backend.

``migrations/<dialect>/0001_outbox.sql`` ... are applied in order, each in its own
transaction, and recorded in ``relaybox_migrations``. Running migrate again is a no-op;
several processes may run it at once (SQLite: ``BEGIN IMMEDIATE`` serialises them;
PostgreSQL: a transaction-level advisory lock).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources

from relaybox.errors import NotARelayboxStore, SchemaMismatch, StoreConnectionLost
from relaybox.store.base import Store, Tx

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def available_migrations(dialect: str) -> tuple[Migration, ...]:
    folder = resources.files("relaybox.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two {dialect} migrations share a version number: {versions}")
    return tuple(found)


def _create_bookkeeping(tx: Tx) -> None:
    tx.execute_script(
        "CREATE TABLE IF NOT EXISTS relaybox_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )


def _apply_next(tx: Tx) -> Migration | None:
    """Apply the lowest missing migration, if any; one per transaction."""
    # Serialise concurrent migrators (PostgreSQL: an advisory lock; SQLite's BEGIN IMMEDIATE
    # already does).
    tx.fetch_one("lock_migrations")
    _create_bookkeeping(tx)
    applied = {int(r["version"]) for r in tx.fetch_all("applied_migrations")}
    for migration in available_migrations(tx.dialect):
        if migration.version not in applied:
            tx.execute_script(migration.sql)
            tx.execute(
                "record_migration",
                {"version": migration.version, "name": migration.name, "now": time.time()},
            )
            return migration
    return None


def migrate(store: Store, *, reconnect_attempts: int = 5) -> list[Migration]:
    """Bring the schema up to date; return the migrations this call applied.

    A connection lost mid-way (a database restart, a killed backend) is retried a few times:
    each migration is its own transaction, so a retry starts from what was committed.
    """
    applied: list[Migration] = []
    lost = 0
    while True:
        try:
            migration = store.run_sync(_apply_next)
        except StoreConnectionLost:
            lost += 1
            if lost > reconnect_attempts:
                raise
            time.sleep(0.1 * 2**lost)
            continue
        if migration is None:
            return applied
        applied.append(migration)


def schema_version(store: Store) -> int:
    def read(tx: Tx) -> int:
        _create_bookkeeping(tx)
        row = tx.fetch_one("schema_version")
        return int(row["version"]) if row and row["version"] is not None else 0

    return store.run_sync(read)


def check_schema(store: Store) -> int:
    """For inspection: the store's schema version, or an error saying which migration is missing.

    Reads only (through the store's read connections): a store opened read-only is never
    migrated, so an older schema is reported ("run `relaybox migrate`") rather than upgraded,
    and a newer one ("upgrade relaybox") rather than misread.
    """

    def read(tx: Tx) -> tuple[bool, set[int]]:
        row = tx.fetch_one("relaybox_schema_present")
        if row is None or not row["present"]:
            return False, set()
        return True, {int(r["version"]) for r in tx.fetch_all("applied_migrations")}

    present, applied = store.read_sync(read)
    where = store.connector.describe()
    if not present:
        raise NotARelayboxStore(
            f"not a relaybox database: {where} has no relaybox_migrations table;"
            " it was left untouched"
        )
    known = {m.version: m for m in available_migrations(store.dialect)}
    missing = [known[v] for v in sorted(set(known) - applied)]
    unknown = sorted(applied - set(known))
    if unknown:
        names = ", ".join(f"{v:04d}" for v in unknown)
        raise SchemaMismatch(
            f"store {where} has migration(s) {names} that this relaybox does not know:"
            " it was written by a newer relaybox; upgrade relaybox to inspect it"
        )
    if missing:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        raise SchemaMismatch(
            f"store {where} needs migration(s) {names}: run `relaybox migrate` (with a"
            " relaybox that can write it) before inspecting it"
        )
    return max(applied, default=0)
