"""Named SQL queries, loaded from ``sql/<dialect>/*.sql``.

Each query sits under a ``-- name: <query_name>`` header, so the SQL of a backend can be
read, reviewed and run by hand in one place. Python code refers to queries only by name.
Parameters are written ``:name`` in both dialects; for PostgreSQL they are rewritten to
psycopg's ``%(name)s`` at load time, except a parameter cast to an array type
(``:ids::bigint[]``), which becomes ``%(name)b``: psycopg sends it in binary, which costs the
worker about a third less CPU than formatting the array as text (the acknowledgement batch on
the hot path is a dozen such arrays; docs/performance.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_NAMED_PARAM = re.compile(r"(?<![:\w]):([a-zA-Z_]\w*)")
_ARRAY_PARAM = re.compile(r"(?<![:\w]):([a-zA-Z_]\w*)(?=::[a-z ]+\[\])")


def parse_queries(text: str) -> dict[str, str]:
    """Split a SQL file into ``{name: sql}`` by its ``-- name:`` headers."""
    queries: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        name = match.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[match.end() : end].strip()
    return queries


def to_pyformat(sql: str) -> str:
    """Rewrite ``:name`` parameters to ``%(name)s`` (and escape literal ``%``).

    A parameter cast to an array type becomes ``%(name)b`` (binary, see the module docstring).
    """
    escaped = sql.replace("%", "%%")
    return _NAMED_PARAM.sub(r"%(\1)s", _ARRAY_PARAM.sub(r"%(\1)b", escaped))


def query_texts(dialect: str) -> dict[str, tuple[str, str]]:
    """``{name: (file, sql)}`` of one dialect (shared files included), as written."""
    queries: dict[str, tuple[str, str]] = {}
    for folder_name in ("shared", dialect):
        folder = resources.files("relaybox.store").joinpath("sql", folder_name)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            where = f"{folder_name}/{entry.name}"
            for name, sql in parse_queries(entry.read_text(encoding="utf-8")).items():
                if name in queries:
                    raise ValueError(
                        f"query {name!r} is defined in {queries[name][0]} and in {where}"
                    )
                queries[name] = (where, sql)
    return queries


@cache
def load_queries(dialect: str, rewrite: Callable[[str], str] | None = None) -> dict[str, str]:
    """All queries of one dialect, passed through the driver's ``rewrite`` (parameter style)."""
    return {
        name: sql if rewrite is None else rewrite(sql)
        for name, (_where, sql) in query_texts(dialect).items()
    }
