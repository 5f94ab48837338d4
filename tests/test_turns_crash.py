"""A turn across real processes: the agent process is SIGKILLed at each point of a turn, then
the message is redelivered (the platform retries) or resumed (`relaybox resume`). Whatever the
point: the card is charged once, the model is called once, one reply, history without
duplicates. Both stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests._turn_handlers import expire_leases

import relaybox
from relaybox import Scope
from relaybox.turns import inspect as turns_inspect
from relaybox.turns.records import TurnStatus

AGENT = """
import asyncio, os, signal, sys
import relaybox
from relaybox import Intent

HERE = os.path.dirname(os.path.abspath(__file__))


def crash(point):
    if os.environ.get("CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def log(name, line):
    with open(os.path.join(HERE, name), "a") as f:
        f.write(line + "\\n")


async def answer(turn):
    rb = turn.relaybox
    await turn.history.append("user", turn.inbound.text)
    crash("after_record")

    async def model(step):  # a paid model call: journaled as a retry-safe step
        log("model_calls", step.key)
        return {"tool_call": {"name": "charge", "args": {"amount": 1200}}}

    decided = await rb.step(f"{turn.key}:model:1", Intent("model", {"prompt": turn.inbound.text}),
                            model, resource_id=turn.resource_id,
                            correlation_id=turn.correlation_id, retry_safe=True)
    crash("after_model")
    await turn.history.append("assistant", decided.value)

    async def charge(step):  # the PSP deduplicates by idempotency key, as Stripe does
        log("psp_requests", step.key)
        crash("inside_tool")
        return {"charge": "ch_" + step.key[-6:]}

    done = await rb.step(f"{turn.key}:tool:1:0", Intent("charge", {"amount": 1200}), charge,
                         resource_id=turn.resource_id, correlation_id=turn.correlation_id,
                         retry_safe=os.environ.get("UNSAFE_TOOL") != "1")
    text = f"Charged 12.00 EUR ({done.value['charge']})."
    await turn.reply([text], history=[("assistant", text)])
    crash("after_reply")


async def main(url, external_id):
    rb = relaybox.open(url)
    try:
        async with rb.turn(channel="mem", external_id=external_id, thread_id="chat-1",
                           resource_id="alice", text="charge me") as turn:
            print(turn.outcome, flush=True)
            if turn.should_run:
                await answer(turn)
    except relaybox.StepNeedsReconciliation:
        print("blocked", flush=True)  # the turn waits for an operator; answer the webhook
    rb.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

CONFIG = """
[turns]
lease_seconds = 30
resume_after_seconds = 0.01
[steps]
lease_seconds = 30
poll_interval_seconds = 0.02
[channels.mem]
transport = "memory"
"""


def run(
    tmp_path: Path, *args: str, crash_at: str | None = None, unsafe: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "CRASH_AT": crash_at or "",
        "UNSAFE_TOOL": "1" if unsafe else "0",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("then", ["redelivery", "resume"])
@pytest.mark.parametrize("point", ["after_record", "after_model", "inside_tool", "after_reply"])
async def test_a_turn_killed_at_any_point_ends_with_one_charge_one_reply_clean_history(
    store_url: str, tmp_path: Path, point: str, then: str
) -> None:
    (tmp_path / "agent_mod.py").write_text(AGENT)
    (tmp_path / "relaybox.toml").write_text(CONFIG)
    killed = run(tmp_path, "agent_mod.py", store_url, "SM81", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout.split() == ["new"]

    rb = relaybox.open(store_url, config=str(tmp_path / "relaybox.toml"))
    try:
        turn = (await rb.store.read(turns_inspect.list_turns()))[0]
        await expire_leases(rb)  # the dead process's leases lapse (without sleeping)
        if then == "redelivery":
            again = run(tmp_path, "agent_mod.py", store_url, "SM81")
            assert again.returncode == 0, again.stderr
            expected = "done" if point == "after_reply" else "retry"
            assert again.stdout.split() == [expected]
        else:
            resumed = run(
                tmp_path, "-m", "relaybox", "--db", store_url, "resume",
                "--handler", "agent_mod:answer", "--json",
            )  # fmt: skip
            assert resumed.returncode == 0, resumed.stderr
            report = json.loads(resumed.stdout)
            if point == "after_reply":
                assert report == []  # answered before the crash: nothing to resume
            else:
                assert [(r["outcome"], r["status"], r["error"]) for r in report] == [
                    ("retry", "answered", None)
                ]
        record = await rb.store.read(turns_inspect.get_turn(turn.id))
        assert record.status is TurnStatus.ANSWERED
        psp_keys = lines(tmp_path / "psp_requests")
        assert len(set(psp_keys)) == 1  # one charge (a retry re-sends the same key)
        assert len(lines(tmp_path / "model_calls")) == 1  # the model was paid once
        deliveries = await rb.deliveries()
        assert len(deliveries) == 1
        reply = (await rb.delivery(deliveries[0].id)).parts[0].body
        assert reply.startswith("Charged 12.00 EUR")
        entries = await rb.memory(Scope("alice", "chat-1")).history.recent(50)
        assert [(m.role, m.content) for m in entries] == [
            ("user", "charge me"),
            ("assistant", {"tool_call": {"name": "charge", "args": {"amount": 1200}}}),
            ("assistant", reply),
        ]
    finally:
        rb.close()


@pytest.mark.slow
async def test_a_tool_that_is_not_retry_safe_blocks_its_turn_until_an_operator_resolves_it(
    store_url: str, tmp_path: Path
) -> None:
    (tmp_path / "agent_mod.py").write_text(AGENT)
    (tmp_path / "relaybox.toml").write_text(CONFIG)
    killed = run(tmp_path, "agent_mod.py", store_url, "SM81", crash_at="inside_tool", unsafe=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rb = relaybox.open(store_url, config=str(tmp_path / "relaybox.toml"))
    try:
        await expire_leases(rb)
        again = run(tmp_path, "agent_mod.py", store_url, "SM81", unsafe=True)
        assert (again.returncode, again.stdout.split()) == (0, ["retry", "blocked"]), again.stderr
        blocked = run(tmp_path, "agent_mod.py", store_url, "SM81", unsafe=True)
        assert blocked.stdout.split() == ["blocked"]  # a redelivery does not run it again
        cli = ("-m", "relaybox", "--db", store_url)
        flagged = json.loads(
            run(tmp_path, *cli, "steps", "list", "--needs-reconciliation", "--json").stdout
        )
        assert [s["step_id"] for s in flagged] == ["turn-1:tool:1:0"]
        nothing = run(tmp_path, *cli, "resume", "--handler", "agent_mod:answer", "--json")
        assert json.loads(nothing.stdout) == []  # blocked: not resumable before the operator
        resolved = run(
            tmp_path, *cli, "steps", "resolve", str(flagged[0]["id"]), "--succeeded",
            "--result", '{"charge": "ch_seen"}', "--reason", "seen in the PSP dashboard",
        )  # fmt: skip
        assert resolved.returncode == 0, resolved.stderr
        resumed = run(tmp_path, *cli, "resume", "--handler", "agent_mod:answer", "--json")
        assert [(r["outcome"], r["status"]) for r in json.loads(resumed.stdout)] == [
            ("retry", "answered")
        ]
        assert len(lines(tmp_path / "psp_requests")) == 1  # never sent again
        deliveries = await rb.deliveries()
        assert len(deliveries) == 1
        reply = (await rb.delivery(deliveries[0].id)).parts[0].body
        assert reply == "Charged 12.00 EUR (ch_seen)."
        entries = await rb.memory(Scope("alice", "chat-1")).history.recent(50)
        assert [m.role for m in entries] == ["user", "assistant", "assistant"]
    finally:
        rb.close()
