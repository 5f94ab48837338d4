"""Every query in docs/operator-sql.md runs on a seeded SQLite file and PostgreSQL schema, and
the key ones answer the same as the CLI does."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until, status_is
from relaybox.audit import FailureFilter
from relaybox.transports.base import TransientError
from relaybox.transports.memory import MemoryTransport

DOC = Path(__file__).resolve().parents[1] / "docs" / "operator-sql.md"
BLOCK = re.compile(r"(?:\*(SQLite|PostgreSQL)\*\n)?```sql\n(.*?)```", re.S)


def blocks(dialect: str) -> list[str]:
    wanted = "SQLite" if dialect == "sqlite" else "PostgreSQL"
    return [sql for only, sql in BLOCK.findall(DOC.read_text()) if only in ("", wanted)]


class Raw:
    """A plain connection, as an operator's sqlite3 / psql session would have."""

    def __init__(self, url: str) -> None:
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgres"
        if self.dialect == "sqlite":
            self.conn: Any = sqlite3.connect(url[len("sqlite:///") :])
        else:
            self.conn = psycopg.connect(url, autocommit=True)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        cursor = self.conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def seeded(store_url: str) -> Iterator[dict[str, Any]]:
    rb = relaybox.open(store_url, config=fast_config())

    async def seed() -> dict[str, Any]:
        got = await rb.record_inbound(
            channel="mem", external_id="SM1", thread_id="chat-1", resource_id="+1", text="hi?"
        )
        silent = await rb.record_inbound(
            channel="mem", external_id="SM2", thread_id="chat-2", resource_id="+1", text="hello?"
        )
        d = (await rb.reply(got.inbound.id, ["one", "two"])).delivery
        errors = iter([TransientError("502")])
        transport = MemoryTransport(script=lambda p: next(errors, None))
        await run_worker_until(rb, transport, status_is(rb, d.id, "delivered"))
        for _ in range(3):  # a turn whose every attempt raises: failed, a gap with its turn
            with pytest.raises(RuntimeError):
                async with rb.turn(
                    channel="mem", external_id="SM3", thread_id="chat-3", resource_id="+1"
                ) as stuck:
                    raise RuntimeError("model down")
        await rb.record_failure(
            "agent", ValueError("bad tool args"), stage="llm", thread_id="chat-2"
        )
        trace = await rb.trace(got.correlation_id)
        failures = await rb.failures(FailureFilter(since=time.time() - 3600))
        return {
            "got": got,
            "silent": silent,
            "stuck": stuck,
            "trace": trace,
            "failures": failures,
        }

    data = asyncio.run(seed())
    ten_minutes_ago = time.time() - 600
    rb.store.run_sync(
        lambda tx: tx.execute_script(
            f"UPDATE inbound_messages SET received_at = {ten_minutes_ago!r}"
            f" WHERE id IN ({data['silent'].inbound.id}, {data['stuck'].inbound.id})"
        )
    )
    rb.close()
    yield data


def fill(sql: str, data: dict[str, Any], dialect: str) -> str:
    hour_ago = (
        "CAST(strftime('%s', 'now') AS REAL) - 3600"
        if dialect == "sqlite"
        else "extract(epoch FROM now()) - 3600"
    )
    return (
        sql.replace("<failure id>", str(data["failures"][0].id))
        .replace("'<user>'", "'+1'")
        .replace("'<correlation id>'", f"'{data['got'].correlation_id}'")
        .replace("<epoch seconds an hour ago>", hour_ago)
        .replace("<epoch seconds 30 days ago>", f"({hour_ago}) - 30 * 86400")
    )


def test_every_documented_query_runs(store_url: str, seeded: dict[str, Any]):
    raw = Raw(store_url)
    try:
        queries = blocks(raw.dialect)
        assert len(queries) >= 14
        for sql in queries:
            filled = fill(sql, seeded, raw.dialect)
            assert "<" not in filled.replace("<>", "").replace(" < ", ""), filled
            raw.rows(filled)
    finally:
        raw.close()


def _query(title: str, dialect: str) -> str:
    text = DOC.read_text()
    section = text[text.index(title) :]
    wanted = "SQLite" if dialect == "sqlite" else "PostgreSQL"
    for only, sql in BLOCK.findall(section):
        if only in ("", wanted):
            return sql
    raise AssertionError(title)


def test_documented_answers_match_the_cli(store_url: str, seeded: dict[str, Any]):
    raw = Raw(store_url)
    try:
        last_hour = raw.rows(fill(_query("## Which jobs failed", raw.dialect), seeded, raw.dialect))
        assert [r[0] for r in last_hour] == [f.id for f in seeded["failures"]]

        gaps = raw.rows(fill(_query("## Silent loss", raw.dialect), seeded, raw.dialect))
        stuck = seeded["stuck"]
        assert [(r[0], *r[-4:]) for r in gaps] == [
            (seeded["silent"].inbound.id, None, None, None, None),
            (stuck.inbound.id, stuck.id, "failed", 3, 3),
        ]

        timeline = raw.rows(fill(_query("Then the whole chain", raw.dialect), seeded, raw.dialect))
        sql_kinds = [_kind(what) for _at, what, _detail in timeline]
        cli_kinds = [e.kind for e in seeded["trace"].events if e.kind != "inbound.duplicate"]
        assert sql_kinds == cli_kinds
    finally:
        raw.close()


def _kind(what: str) -> str:
    words = what.replace(":", "").split()
    if words[0] == "inbound":
        return "inbound." + words[2]
    if words[0] == "delivery":
        return "delivery." + words[2]
    if words[0] == "attempt":
        return "attempt." + words[1]
    return "failure"
