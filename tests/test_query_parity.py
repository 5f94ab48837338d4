"""Every named query exists in both dialects with the same parameters; shared SQL lives once.

Python code calls queries by name and passes the same parameters whatever the store, so a query
missing in one dialect, or reading a parameter the other does not, is a bug found only on that
store. The few dialect-only queries are listed here explicitly, each with the reason.
"""

from __future__ import annotations

import re
from importlib import resources

from relaybox.store.queries import query_texts

# Dialect-only queries, and why. Add yours here (with the reason) rather than skipping the test.
SQLITE_ONLY = {
    # SQLite acks part by part with small fenced updates (in process, cheap); PostgreSQL does a
    # whole batch in one statement (record_sent_batch).
    "advance_cursor": "per-part fenced cursor write (PostgreSQL: record_sent_batch)",
    "advance_cursor_within": "cheaper cursor write for a non-final part (SQLite only)",
    "next_in_thread": "a delivered reply's successor (PostgreSQL: next_id of record_sent_batch)",
}
POSTGRES_ONLY = {
    "record_sent_batch": "one-statement batch of acks (SQLite: advance_cursor per part)",
    "insert_deliveries": "bulk enqueue in one statement (SQLite: insert_delivery per reply)",
    "insert_parts": "bulk part insert in one statement (SQLite: insert_part per part)",
    # SQLite's claimable_heads names its index instead (INDEXED BY deliveries_ready).
    "claim_scan_in_index_order": "planner setting around the claim's scan",
    "claim_scan_planner_defaults": "resets claim_scan_in_index_order",
}

_PARAM = re.compile(r"(?<![:\w]):([a-zA-Z_]\w*)")


def _params(sql: str) -> set[str]:
    sql = re.sub(r"--[^\n]*", "", sql)  # comments
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)  # string literals
    return set(_PARAM.findall(sql))


def test_every_query_exists_in_both_dialects_unless_allowlisted() -> None:
    sqlite, postgres = query_texts("sqlite"), query_texts("postgres")
    assert set(sqlite) - set(postgres) == set(SQLITE_ONLY)
    assert set(postgres) - set(sqlite) == set(POSTGRES_ONLY)


def test_both_dialects_take_the_same_parameters() -> None:
    sqlite, postgres = query_texts("sqlite"), query_texts("postgres")
    different = {
        name: sorted(_params(sqlite[name][1]) ^ _params(postgres[name][1]))
        for name in set(sqlite) & set(postgres)
        if _params(sqlite[name][1]) != _params(postgres[name][1])
    }
    assert different == {}


def test_identical_sql_files_live_once_in_shared() -> None:
    root = resources.files("relaybox.store").joinpath("sql")
    sqlite = {e.name: e.read_text(encoding="utf-8") for e in root.joinpath("sqlite").iterdir()}
    postgres = {e.name: e.read_text(encoding="utf-8") for e in root.joinpath("postgres").iterdir()}
    duplicated = sorted(n for n in set(sqlite) & set(postgres) if sqlite[n] == postgres[n])
    assert duplicated == [], "move these to store/sql/shared/"


def test_a_shared_query_cannot_also_be_defined_per_dialect() -> None:
    sqlite = query_texts("sqlite")
    shared = {n for n, (where, _) in sqlite.items() if where.startswith("shared/")}
    assert {"trace_deliveries", "trace_delivery_events"} <= shared
    assert all(query_texts("postgres")[n][0].startswith("shared/") for n in shared)
