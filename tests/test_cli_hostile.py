"""Every command of the CLI, every argument, hostile values, both stores: never a traceback.

The test walks the whole command tree (new commands are covered without being listed) and
feeds each argument and option, one at a time, values an operator can type by accident or a
script can produce: integers past 64 bits, negative numbers, ``1e30``, the empty string, a NUL
character, bytes that are not UTF-8, a very long string. The answer must be an exit status of
0, 1 or 2; a refusal is exactly one ``error: ...`` line (never the catch-all "internal error");
no traceback anywhere; and the store is unchanged afterwards (nothing written).

Long-running commands (worker, serve, webhooks, resume, demo) are fed only numbers and the
options with a fixed set of choices (``worker --otel-exporter``), which must be refused before
they start.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from relaybox.cli import command, run, walk
from relaybox.store import open_store

HUGE = "99999999999999999999"
HOSTILE_TEXT = [HUGE, "-1", "", "a\x00b", "\udcff\udcfe", "x" * 100_000, "1e30"]
HOSTILE_NUMBER = [HUGE, "-" + HUGE, "1e30", "", "a\x00b", "\udcff"]
LONG_RUNNING = {"worker", "serve", "webhooks", "resume", "demo"}
BENIGN = {"int": "424242", "str": "no-such-thing"}


def _leaves() -> list[tuple[list[str], Any]]:
    found = []
    root = command()

    def visit(cmd: Any, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if path and (not subs or getattr(cmd, "invoke_without_command", False)):
            found.append((path, cmd))
        for name, sub in (subs or {}).items():
            visit(sub, [*path, name])

    visit(root, [])
    assert len(list(walk(root))) > 30  # the whole tree, not a stub
    return found


def _kind(param: Any) -> str:
    annotation = param.type_descriptor.annotation
    return "int" if "int" in str(annotation) and "bool" not in str(annotation) else "str"


def _choices(param: Any) -> bool:
    """An option whose values are a fixed set (a Literal): the parser refuses anything else."""
    return "Literal[" in str(param.type_descriptor.annotation)


def _value_params(cmd: Any) -> list[Any]:
    return [
        p
        for p in cmd.params
        if not getattr(p, "is_flag", False)
        and p.name != "help"
        and "bool" not in str(p.type_descriptor.annotation)
    ]


def _args(path: list[str], cmd: Any, hostile: Any | None, value: str) -> list[str]:
    args = list(path)
    for param in _value_params(cmd):
        is_option = bool(getattr(param, "opts", [""])[0].startswith("-"))
        if param is hostile:
            given = value
        elif param.required:
            given = BENIGN[_kind(param)]
        else:
            continue
        args += [param.opts[0], given] if is_option else [given]
    if "--yes" in {o for p in cmd.params for o in getattr(p, "opts", [])}:
        args.append("--yes")  # never wait for a confirmation prompt
    return args


def _tables(url: str) -> dict[str, int]:
    conn = sqlite3.connect(url[len("sqlite:///") :])
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    got = {n: len(list(conn.execute(f'SELECT * FROM "{n}"'))) for n in names}
    conn.close()
    return got


def _digest(url: str) -> str:
    """Every row of every table, hashed: equal digests mean nothing was written."""
    h = hashlib.sha256()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        ]
        for table in tables:
            for row in sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"')):
                h.update(f"{table}:{row}".encode())
        conn.close()
        return h.hexdigest()
    with psycopg.connect(url) as pg:
        tables = [
            r[0]
            for r in pg.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        for table in tables:
            for row in sorted(repr(r) for r in pg.execute(f'SELECT * FROM "{table}"')):
                h.update(f"{table}:{row}".encode())
    return h.hexdigest()


@pytest.fixture
def seeded(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.chdir(tmp_path)  # no relaybox.toml: the defaults (a "console" channel)
    monkeypatch.setenv("RELAYBOX_DB", store_url)
    store = open_store(store_url)
    store.close()
    code = run(["enqueue", "--channel", "console", "--thread", "t", "--to", "u", "--part", "hi"])
    assert code == 0
    yield store_url


def test_every_argument_of_every_command_survives_hostile_values(
    seeded: str, capfd: pytest.CaptureFixture[str]
) -> None:
    before = _digest(seeded)
    t0 = _tables(seeded) if seeded.startswith("sqlite") else {}
    problems: list[str] = []
    swept: set[tuple[str, str]] = set()
    runs = 0
    for path, cmd in _leaves():
        for param in _value_params(cmd):
            numeric = _kind(param) == "int"
            if path[0] in LONG_RUNNING and not numeric and not _choices(param):
                continue
            swept.add((" ".join(path), param.name))
            for value in HOSTILE_NUMBER if numeric else HOSTILE_TEXT:
                args = _args(path, cmd, param, value)
                code = run(args)
                runs += 1
                out, err = capfd.readouterr()
                shown = f"relaybox {' '.join(a[:20] for a in args)!r} -> {code}: {err[:160]!r}"
                if "Traceback" in out + err or code not in (0, 1, 2):
                    problems.append("traceback or bad exit: " + shown)
                elif code != 0 and (
                    len(err.strip().splitlines()) != 1
                    or not err.startswith("error: ")
                    or err.startswith("error: internal error")
                ):
                    problems.append("not one clear error line: " + shown)
                elif numeric and value in (HUGE, "1e30") and code != 2:
                    problems.append("number out of range accepted: " + shown)
    assert runs > 100
    assert ("worker", "otel_exporter") in swept  # a long-running command's choices, too
    assert problems == []
    if seeded.startswith("sqlite"):
        t1 = _tables(seeded)
        print("TABLES>>", {k: (t0.get(k), v) for k, v in t1.items() if t0.get(k) != v})
    assert _digest(seeded) == before, "a refused or harmless command wrote to the store"
