"""`relaybox worker --turn-handler`, `relaybox resume` and `relaybox turns ...` as real
processes: a worker answers a turn a dead process left behind; bad input is one error line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests._turn_handlers import expire_leases

import relaybox
from relaybox import Scope
from relaybox.store import Tx
from relaybox.turns import inspect as turns_inspect
from relaybox.turns.records import TurnStatus

REPO = Path(__file__).resolve().parent.parent
HANDLER = "tests._turn_handlers:answer_hello"
CONFIG = """
[turns]
lease_seconds = 30
resume_after_seconds = 0.05
resume_interval_seconds = 0.1
[channels.mem]
transport = "memory"
"""


def cli(config: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", db, "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=REPO,  # so that tests._turn_handlers is importable
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)},
        timeout=60,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


async def abandoned_turn(rb: relaybox.Relaybox, external_id: str = "SM1") -> int:
    """A turn whose process died mid-way: claimed, history written, lease never renewed."""
    scope = rb.turn(channel="mem", external_id=external_id, thread_id="chat-1", resource_id="ada")
    turn = await scope.__aenter__()
    await turn.history.append("user", "(no text)")
    assert scope._keeper is not None
    scope._keeper.cancel()
    return turn.id


async def test_a_worker_with_a_turn_handler_answers_a_turn_a_dead_process_left(
    store_url: str, config: Path
) -> None:
    rb = relaybox.open(store_url, config=str(config))
    try:
        turn_id = await abandoned_turn(rb)
        await expire_leases(rb)  # its process has been dead longer than the lease
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "relaybox", "--db", store_url, "--config", str(config)),
                *("worker", "--turn-handler", HANDLER),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # wait for the outcome (bounded), not for time to pass
                record = await rb.store.read(turns_inspect.get_turn(turn_id))
                listed = await rb.deliveries()
                if record.status is TurnStatus.ANSWERED and [str(d.status) for d in listed] == [
                    "delivered"
                ]:
                    break
                assert time.monotonic() < deadline, (record, listed)
                await asyncio.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert f"resuming turns with {HANDLER}" in out
        assert record.attempts == 2
        entries = await rb.memory(Scope("ada", "chat-1")).history.recent(10)
        assert [(m.role, m.content, m.attempt) for m in entries] == [
            ("user", "(no text)", 2),
            ("assistant", "hello", 2),
        ]
    finally:
        rb.close()


def test_turn_commands_show_the_journal_and_refuse_bad_input(sqlite_url: str, config: Path) -> None:
    async def seed(external_id: str = "SM1") -> int:
        rb = relaybox.open(sqlite_url, config=str(config))
        try:
            return await abandoned_turn(rb, external_id)
        finally:
            rb.close()

    async def lapse(url: str, config: Path) -> None:
        rb = relaybox.open(url, config=str(config))
        try:
            await expire_leases(rb)
        finally:
            rb.close()

    turn_id = asyncio.run(seed())
    listed = cli(config, sqlite_url, "turns", "list")
    assert listed.returncode == 0 and "running" in listed.stdout, listed.stderr
    assert "lease lapsed" not in listed.stdout
    asyncio.run(lapse(sqlite_url, config))
    assert "running (lease lapsed)" in cli(config, sqlite_url, "turns", "list").stdout
    # One pass of resume by hand, for exactly this turn.
    resumed = cli(config, sqlite_url, "resume", "--handler", HANDLER, "--turn", str(turn_id))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == f"turn {turn_id}: retry -> answered"
    shown = json.loads(cli(config, sqlite_url, "turns", "show", str(turn_id), "--json").stdout)
    assert [e["event"] for e in shown["events"]] == ["started", "retried", "answered"]
    again = cli(config, sqlite_url, "resume", "--handler", HANDLER)
    assert again.stdout.strip() == "nothing to resume"
    # A handler that hangs is cancelled after --handler-timeout: a failed attempt, pending.
    hung_id = asyncio.run(seed("SM2"))
    asyncio.run(lapse(sqlite_url, config))
    hung = cli(
        config, sqlite_url, "resume", "--handler", "tests._turn_handlers:hang",
        "--handler-timeout", "0.2s", "--turn", str(hung_id),
    )  # fmt: skip
    assert hung.returncode == 0, hung.stderr
    assert hung.stdout.startswith(f"turn {hung_id}: retry -> pending (TurnHandlerTimeout:")
    for args, message in [
        (["turns", "retry", str(turn_id)], f"turn {turn_id} is answered, not failed"),
        (["turns", "show", "999"], "turn 999 does not exist"),
        (["turns", "list", "--status", "sleeping"], "unknown status 'sleeping'"),
        (["resume"], "no turn handler"),
        (["resume", "--handler", "nocolon"], "must look like 'package.module:function'"),
        (["resume", "--handler", "no_such_module_x:f"], "cannot import 'no_such_module_x'"),
        (["resume", "--handler", "tests._turn_handlers:nope"], "has no 'nope'"),
        (["resume", "--handler", "tests._turn_handlers:not_async"], "must be an async function"),
        (["resume", "--handler", HANDLER, "--turn", "999"], "turn 999 does not exist"),
        (["resume", "--handler", HANDLER, "--handler-timeout", "0s"], "must be more than 0"),
        (["resume", "--handler", HANDLER, "--handler-timeout", "soon"], "is not a duration"),
        (["worker", "--turn-handler", "nocolon"], "must look like 'package.module:function'"),
    ]:
        result = cli(config, sqlite_url, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_gaps_show_the_turn_and_prune_takes_turns_with_their_message(
    store_url: str, config: Path
) -> None:
    """`relaybox gaps` says what became of a message's turn; `relaybox prune` removes a turn
    and its journal with its message, and keeps the person's history (it is memory)."""

    async def seed() -> tuple[int, int]:
        rb = relaybox.open(store_url, config=str(config))
        try:
            msg = {"channel": "mem", "thread_id": "chat-1", "resource_id": "ada"}
            async with rb.turn(external_id="handled", text="thumbs up", **msg) as handled:
                await handled.history.append("user", "thumbs up")
                await handled.no_reply("a reaction", history=[("assistant", "(reacted)")])
            for _ in range(3):  # every attempt raises: failed, a gap
                with pytest.raises(RuntimeError):
                    async with rb.turn(external_id="broken", text="help", **msg) as broken:
                        raise RuntimeError("model down")

            def backdate(tx: Tx) -> None:  # both messages are 40 days old
                tx.execute_script(
                    f"UPDATE inbound_messages SET received_at = {time.time() - 40 * 86_400!r}"
                )

            await rb.store.run(backdate)
            return handled.id, broken.id
        finally:
            rb.close()

    async def left() -> tuple[dict[int, list[str]], list[tuple[str, object, int | None]]]:
        rb = relaybox.open(store_url, config=str(config))
        try:
            journals = {}
            for record in await rb.store.read(turns_inspect.list_turns()):
                events = await rb.store.read(turns_inspect.events_of_turn(record.id))
                journals[record.id] = [e.event for e in events]
            entries = await rb.memory(Scope("ada", "chat-1")).history.recent(10)
            return journals, [(m.role, m.content, m.turn_id) for m in entries]
        finally:
            rb.close()

    handled_id, broken_id = asyncio.run(seed())
    gaps = cli(config, store_url, "gaps", "--older-than", "1s", "--json")
    assert gaps.returncode == 0, gaps.stderr
    [gap] = json.loads(gaps.stdout)
    assert gap["external_id"] == "broken"
    assert gap["turn"] == {
        "id": broken_id,
        "status": "failed",
        "attempts": 3,
        "max_attempts": 3,
        "blocked_step": None,
        "error_type": "RuntimeError",
    }
    table = cli(config, store_url, "gaps", "--older-than", "1s")
    assert f"{broken_id} failed 3/3" in table.stdout, table.stdout
    # A routine prune: the handled message goes with its turn and journal; the gap stays.
    pruned = cli(config, store_url, "prune", "--older-than", "30d", "--json")
    assert pruned.returncode == 0, pruned.stderr
    journals, history = asyncio.run(left())
    assert list(journals) == [broken_id]
    assert journals[broken_id][-1] == "failed"
    assert history == [
        ("user", "thumbs up", handled_id),
        ("assistant", "(reacted)", handled_id),
    ]
    # Named, unanswered messages go too, with their turns; the history is still kept.
    named = ("prune", "--older-than", "30d", "--table", "unanswered_inbound")
    assert cli(config, store_url, *named).returncode == 0
    journals, kept = asyncio.run(left())
    assert journals == {} and kept == history
    assert json.loads(cli(config, store_url, "gaps", "--older-than", "1s", "--json").stdout) == []
