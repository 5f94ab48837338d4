"""Steps across real processes: a run killed with SIGKILL mid-step, and duplicates racing.

The side effect is a line appended (and fsynced) to a file by the step body, so we can count
how often it really ran, whatever happened to the processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relaybox.config import parse_config
from relaybox.steps import Intent, StepContext, StepNeedsReconciliation, StepPolicy, StepRunner
from relaybox.store import open_store

LEASE = 0.5
INTENT = Intent("book_table", {"people": 2, "at": "19:30"}, model="m-1")

# One agent process: runs the step "in-9:book" for alice. The body appends its key to the
# side-effect log, then sleeps `hold` seconds before returning.
CHILD = """
import asyncio, json, os, sys
from relaybox.config import parse_config
from relaybox.steps import Intent, StepPolicy, StepRunner

url, log, retry_safe, hold = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])

async def body(step):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {step.key}\\n")
        f.flush()
        os.fsync(f.fileno())
    await asyncio.sleep(hold)
    return {"booking": f"B-{os.getpid()}"}

async def main():
    from relaybox.store import open_store
    store = open_store(url)
    config = parse_config({"steps": {"lease_seconds": LEASE, "poll_interval_seconds": 0.02}})
    runner = StepRunner(store, config)
    result = await runner.run(
        "in-9:book",
        Intent("book_table", {"people": 2, "at": "19:30"}, model="m-1"),
        body,
        resource_id="alice",
        correlation_id="corr-crash",
        policy=StepPolicy(retry_safe=retry_safe),
    )
    print(json.dumps({"value": result.value, "replayed": result.replayed}), flush=True)
    store.close()

asyncio.run(main())
""".replace("LEASE", repr(LEASE))


def spawn(url: str, log: Path, *, retry_safe: bool, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(log), "1" if retry_safe else "0", str(hold)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(log: Path, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and len(lines := log.read_text().splitlines()) >= count:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"the step body did not run {count} time(s) within {timeout}s")


def kill_mid_step(url: str, log: Path, *, retry_safe: bool) -> str:
    """Start an agent process, SIGKILL it while its step body runs; return the step key."""
    child = spawn(url, log, retry_safe=retry_safe, hold=60)
    try:
        line = wait_for_lines(log, 1)[0]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return line.split()[1]


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"}
    return subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", url, *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=60,
    )


def runner_for(url: str) -> tuple[StepRunner, object]:
    store = open_store(url)
    config = parse_config({"steps": {"lease_seconds": LEASE, "poll_interval_seconds": 0.02}})
    return StepRunner(store, config), store


async def test_a_retry_safe_step_killed_mid_way_runs_again_with_the_same_key(
    store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "bookings.log"
    key = kill_mid_step(store_url, log, retry_safe=True)
    runner, store = runner_for(store_url)
    try:

        async def body(step: StepContext) -> dict[str, str]:
            with log.open("a") as f:
                f.write(f"{os.getpid()} {step.key}\n")
            return {"booking": "B-retry"}

        # The dead run's lease is still live for a moment: the retry waits it out, then runs.
        result = await runner.run(
            "in-9:book", INTENT, body, resource_id="alice", policy=StepPolicy(retry_safe=True)
        )
    finally:
        store.close()  # type: ignore[attr-defined]
    assert result.value == {"booking": "B-retry"} and not result.replayed
    assert result.record.attempts == 2
    keys = [line.split()[1] for line in log.read_text().splitlines()]
    assert keys == [key, key]  # the downstream API saw the same idempotency key twice


async def test_an_unsafe_step_killed_mid_way_is_surfaced_for_reconciliation(
    store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "bookings.log"
    kill_mid_step(store_url, log, retry_safe=False)
    time.sleep(LEASE + 0.1)

    # Before anyone retries, an operator already sees the stalled step.
    listed = cli(store_url, "steps", "list", "--needs-reconciliation", "--json")
    assert listed.returncode == 0, listed.stderr
    [stalled] = json.loads(listed.stdout)
    assert stalled["step_id"] == "in-9:book" and stalled["status"] == "running"
    assert stalled["needs_reconciliation"] is True

    runner, store = runner_for(store_url)
    ran_again = False

    async def body(step: StepContext) -> str:
        nonlocal ran_again
        ran_again = True
        return "booked twice"

    try:
        with pytest.raises(
            StepNeedsReconciliation, match=f"relaybox steps resolve {stalled['id']}"
        ):
            await runner.run("in-9:book", INTENT, body, resource_id="alice")
        assert not ran_again and len(log.read_text().splitlines()) == 1

        shown = cli(store_url, "steps", "show", str(stalled["id"]), "--json")
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert detail["status"] == "needs_reconciliation"
        assert [e["event"] for e in detail["events"]] == ["started", "needs_reconciliation"]
        human = cli(store_url, "steps", "list", "--needs-reconciliation")
        assert "needs_reconciliation" in human.stdout and "in-9:book" in human.stdout

        traced = cli(store_url, "trace", "corr-crash", "--json")
        assert traced.returncode == 0, traced.stderr
        kinds = [e["kind"] for e in json.loads(traced.stdout)["events"]]
        assert "step.started" in kinds and "step.needs_reconciliation" in kinds
        assert "failure" in kinds  # the failure audit has the crash too

        # The operator checked the restaurant: the table was booked.
        resolved = cli(
            store_url,
            "steps",
            "resolve",
            str(stalled["id"]),
            "--succeeded",
            "--result",
            '{"booking": "B-seen-by-operator"}',
            "--reason",
            "booking found in the restaurant's system",
        )
        assert resolved.returncode == 0, resolved.stderr
        replay = await runner.run("in-9:book", INTENT, body, resource_id="alice")
    finally:
        store.close()  # type: ignore[attr-defined]
    assert replay.replayed and replay.value == {"booking": "B-seen-by-operator"}
    assert not ran_again


def test_resolve_refuses_bad_input_and_steps_that_need_nothing(store_url: str) -> None:
    for args, message in [
        (["resolve", "1"], "exactly one of --succeeded, --failed or --rerun"),
        (["resolve", "1", "--succeeded", "--result", "{nope"], "--result must be JSON"),
        (["resolve", "1", "--failed"], "--failed needs --error"),
        (["resolve", "999", "--rerun"], "step 999 does not exist"),
        (["show", "999"], "step 999 does not exist"),
        (["list", "--status", "lost"], "unknown status 'lost'"),
    ]:
        done = cli(store_url, "steps", *args)
        assert done.returncode == 1, (args, done.stdout)
        assert message in done.stderr and "Traceback" not in done.stderr


def test_duplicate_processes_racing_run_the_side_effect_once(
    store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "bookings.log"
    open_store(store_url).close()  # migrate once, so the racers only race for the step
    racers = [spawn(store_url, log, retry_safe=False, hold=0.5) for _ in range(4)]
    outputs = [racer.communicate(timeout=60) for racer in racers]
    for racer, (_, stderr) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, stderr
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert len(log.read_text().splitlines()) == 1
    assert len({json.dumps(r["value"]) for r in results}) == 1
    assert sorted(r["replayed"] for r in results) == [False, True, True, True]
