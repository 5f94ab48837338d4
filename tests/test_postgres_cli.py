"""Every ``relaybox`` command works with ``--db postgresql://...`` and with ``$RELAYBOX_DB``.

The sweep walks the real command tree, so a command added later without a PostgreSQL run here
fails :func:`test_every_command_is_covered` until it is added to ``COMMANDS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import relaybox
from relaybox.cli import app
from relaybox.models import Status
from relaybox.outbox import transitions as tr
from relaybox.steps import Intent, StepNeedsReconciliation
from relaybox.steps import transitions as steps_tr
from relaybox.steps.transitions import StepRequest
from relaybox.tasks import Conversation

runner = CliRunner()

# Each command path -> the arguments of one real run against a seeded PostgreSQL store
# ({name} fields come from the seed), or None for a command that never opens the --db store.
COMMANDS: dict[str, list[str] | None] = {
    "migrate": ["migrate", "--json"],
    "enqueue": [
        "enqueue", "--channel", "mem", "--thread", "chat-5", "--to", "eve", "--part", "hi",
        "--json",
    ],
    "worker": None,  # long-running: run as a real process in test_worker_and_environment_url
    "demo": None,  # a self-contained story on its own SQLite file
    "deliveries list": ["deliveries", "list", "--json"],
    "deliveries show": ["deliveries", "show", "{delivered}", "--json"],
    "deliveries cancel": ["deliveries", "cancel", "{queued}", "--json"],
    "deliveries retry": ["deliveries", "retry", "{failed}", "--json"],
    "deliveries resolve": ["deliveries", "resolve", "{unknown}", "--arrived", "--json"],
    "deliveries retry-all": ["deliveries", "retry-all", "--channel", "mem", "--yes", "--json"],
    "deliveries cancel-all": [
        "deliveries", "cancel-all", "--channel", "mem", "--dry-run", "--json",
    ],
    "serve": None,  # long-running: a real process on PostgreSQL in tests/test_console_cli.py
    "failures": ["failures", "--since", "1h", "--json"],
    "failures show": ["failures", "show", "{failure}", "--json"],
    "inbound list": ["inbound", "list", "--json"],
    "inbound show": ["inbound", "show", "{inbound}", "--json"],
    "trace": ["trace", "{correlation}", "--json"],
    "gaps": ["gaps", "--older-than", "0s", "--json"],
    "health": ["health", "--json"],
    "workers": ["workers", "--json"],
    "prune": ["prune", "--older-than", "30d", "--dry-run", "--json"],
    "steps list": ["steps", "list", "--json"],
    "steps show": ["steps", "show", "{step}", "--json"],
    "steps resolve": ["steps", "resolve", "{step}", "--rerun", "--reason", "checked", "--json"],
    "steps prune": ["steps", "prune", "--dry-run", "--json"],
    "memory resources": ["memory", "resources", "--json"],
    "memory show": ["memory", "show", "--resource", "+15550100", "--json"],
    "memory forget": ["memory", "forget", "--resource", "+15550100", "--yes", "--json"],
    "tasks list": ["tasks", "list", "--late", "--json"],
    "tasks show": ["tasks", "show", "{task}", "--json"],
    "tasks events": ["tasks", "events", "{task}", "--all", "--json"],
    "tasks cancel": ["tasks", "cancel", "{task}", "--reason", "checked", "--json"],
    "turns list": ["turns", "list", "--json"],
    "turns show": ["turns", "show", "{turn}", "--json"],
    "turns retry": ["turns", "retry", "{turn}", "--json"],
    "resume": ["resume", "--handler", "tests._turn_handlers:answer_hello", "--json"],
    "transports": None,  # lists the transport registry; never opens the --db store
    "webhooks": None,  # long-running: a real process on both stores in test_platforms_cli.py
}  # fmt: skip


def _command_paths() -> set[str]:
    """Every runnable command: leaves, and groups that run on their own (``failures``)."""
    root = typer.main.get_command(app)
    found: set[str] = set()

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            if path and command.invoke_without_command:
                found.add(" ".join(path))
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found.add(" ".join(path))

    walk(root, [])
    return found


def test_every_command_is_covered() -> None:
    assert _command_paths() == set(COMMANDS), "add the new command's PostgreSQL run to COMMANDS"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(
        '[channels.mem]\ntransport = "memory"\n\n'
        '[channels.dead]\ntransport = "webhook"\nurl = "http://127.0.0.1:9/send"\n'
        "max_attempts = 1\nsend_timeout_seconds = 2\n"
        "max_age_seconds = 1\n",  # nothing listens: an outage, waited out until the max age
        encoding="utf-8",
    )
    return path


def _seed(url: str, config: Path) -> dict[str, Any]:
    """A store with one delivery in each interesting state, a failure, inbound, step, memory."""

    async def seed() -> dict[str, Any]:
        rb = relaybox.open(url, config=str(config))
        try:
            made = {}
            for name in ("delivered", "queued", "failed", "unknown"):
                result = await rb.enqueue(
                    channel="mem", thread_id=f"chat-{name}", recipient="a", parts=["x"]
                )
                made[name] = result.delivery
            claimed = {d.id: d for d in await rb.store.run(tr.claim("w", ["mem"], 10, 30))}
            for name, status in (("failed", Status.FAILED), ("unknown", Status.UNKNOWN)):
                d = claimed[made[name].id]
                await rb.store.run(tr.finish(tr.Lease(d.id, d.lease_epoch), status, "seeded"))
            d = claimed[made["delivered"].id]
            attempt = tr.AttemptRecord(d.id, 1, "w", time.time(), "surfaced", d.correlation_id, 0)
            await rb.store.run(
                tr.record_sent(tr.Lease(d.id, d.lease_epoch), 0, "surfaced", None, attempt)
            )
            d = claimed[made["queued"].id]
            await rb.store.run(
                tr.release(
                    tr.Lease(d.id, d.lease_epoch),
                    delay_seconds=3600,
                    refund_attempt=True,
                    error=None,
                    clear_in_flight=True,
                )
            )
            failure = await rb.record_failure("agent", RuntimeError("model timed out"), job_id="r1")
            inbound = await rb.record_inbound(
                channel="mem", external_id="SM-1", thread_id="chat-9", resource_id="+15550100"
            )
            step = await _stalled_step(rb)
            await rb.memory(relaybox.Scope("+15550100", "chat-9")).notes.add("likes trains")
            turn = await _failed_turn(rb)
            task = await rb.tasks.start(Conversation("mem", "chat-task", "a"), "seeded task")
            await task.progress(data={"n": 1})
            return {
                **{name: d.id for name, d in made.items()},
                "correlation": made["delivered"].correlation_id,
                "failure": failure,
                "inbound": inbound.inbound.id,
                "step": step,
                "turn": turn,
                "task": task.id,
            }
        finally:
            rb.close()

    return asyncio.run(seed())


async def _failed_turn(rb: relaybox.Relaybox) -> int:
    """A turn whose every attempt raised: failed, for `turns retry` and then `resume`."""
    turn_id = 0
    for _ in range(rb.config.turns.max_attempts):
        with pytest.raises(RuntimeError):
            async with rb.turn(
                channel="mem", external_id="SM-T", thread_id="chat-8", resource_id="+15550100"
            ) as turn:
                turn_id = turn.id
                raise RuntimeError("model down")
    return turn_id


async def _stalled_step(rb: relaybox.Relaybox) -> int:
    """A step whose run died mid-way (unsafe to rerun): it needs an operator."""
    intent = Intent("book_table", {"people": 2})
    request = StepRequest(
        resource_id="+15550100",
        step_id="in-1:book",
        intent=intent,
        correlation_id="corr-step",
        retry_safe=False,
        new_step=False,
        owner="dead-worker",
        lease_seconds=0.05,
    )
    claimed = await rb.store.run(steps_tr.claim(request))
    await asyncio.sleep(0.1)

    async def body(step: object) -> None:
        raise AssertionError("a stalled unsafe step must not run again")

    with pytest.raises(StepNeedsReconciliation):
        await rb.step("in-1:book", intent, body, resource_id="+15550100")
    return int(claimed.record.id)


def test_every_command_runs_on_postgres(pg_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path)
    seeded = _seed(pg_url, config)
    failed: list[str] = []
    for path, args in COMMANDS.items():
        if args is None:
            continue
        filled = [a.format(**seeded) for a in args]
        result = runner.invoke(
            app, ["--db", pg_url, "--config", str(config), *filled], env={"COLUMNS": "200"}
        )
        # health exits 2 for "unhealthy" (here: queued work and no live worker), still JSON.
        allowed = (0, 2) if path == "health" else (0,)
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if result.exit_code not in allowed or crashed:
            failed.append(f"{path}: exit {result.exit_code}: {result.output[-500:]}")
            continue
        json.loads(result.stdout)  # --json output on stdout is valid JSON (logs go to stderr)
    assert failed == []


def test_worker_and_environment_url(pg_url: str, tmp_path: Path) -> None:
    """``relaybox worker`` as a real process, store URL from $RELAYBOX_DB, SIGTERM to stop."""
    config = _config(tmp_path)
    env = {**os.environ, "RELAYBOX_DB": pg_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "relaybox", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    made = cli("enqueue", "--channel", "mem", "--thread", "t", "--to", "a", "--part", "p", "--json")
    assert made.returncode == 0, made.stderr
    dead = cli(
        "enqueue", "--channel", "dead", "--thread", "t", "--to", "a", "--part", "p", "--json"
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "relaybox", "--config", str(config), "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = json.loads(cli("deliveries", "list", "--json").stdout)
            if {d["status"] for d in listed} == {"delivered", "expired"}:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "postgresql://" in out  # it says which store it works on
    failures = json.loads(cli("failures", "--json").stdout)
    assert {f["job_id"] for f in failures} == {str(json.loads(dead.stdout)["id"])}
