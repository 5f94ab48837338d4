"""``relaybox tasks`` (list, show, events, cancel); tasks in ``trace`` and ``health``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _task_helpers import CONV, TaskRig
from relaybox.cli import app
from relaybox.tasks import Contract, TaskState

runner = CliRunner()
TOML = """
[channels.mem]
transport = "memory"
"""


def cli(url: str, config: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["--db", url, "--config", str(config), *args], env={"COLUMNS": "250"}
    )
    return result.exit_code, result.output


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(TOML)
    return path


async def test_tasks_cli_lists_shows_pages_and_cancels(store_url: str, config_file: Path) -> None:
    rig = TaskRig(store_url)
    try:
        quiet = await rig.tasks.start(CONV, "Quiet one", contract=Contract(progress_every=10))
        await quiet.ack("on it")
        busy = await rig.tasks.start(CONV, "Busy one", task_key="busy")
        for n in range(5):
            await busy.progress(data={"n": n})
        rig.clock.advance(11)
        await rig.tick()  # quiet gets nudged: late
    finally:
        rig.close()
    code, out = cli(store_url, config_file, "tasks", "list", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [t["id"] for t in listed] == [busy.id, quiet.id]
    code, out = cli(store_url, config_file, "tasks", "list", "--state", "late", "--json")
    assert [t["id"] for t in json.loads(out)] == [quiet.id]
    code, out = cli(store_url, config_file, "tasks", "list", "--thread", "nope", "--json")
    assert json.loads(out) == []
    code, out = cli(store_url, config_file, "tasks", "list")
    assert code == 0 and "Quiet one" in out and "late" in out
    code, out = cli(store_url, config_file, "tasks", "show", str(busy.id))
    assert code == 0 and "Busy one" in out and "8 events" in out
    code, out = cli(store_url, config_file, "tasks", "list", "--late", "--json")
    assert [t["id"] for t in json.loads(out)] == [quiet.id]
    code, out = cli(store_url, config_file, "tasks", "events", str(busy.id), "--limit", "2")
    assert code == 0 and "--after 2" in out
    code, out = cli(
        store_url, config_file, "tasks", "events", str(busy.id), "--limit", "2", "--all", "--json"
    )
    data = json.loads(out)
    assert [e["seq"] for e in data["events"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert data["events"][1]["payload"]["data"] == {"n": 0} and data["next_after"] is None
    code, out = cli(
        store_url, config_file, "tasks", "cancel", str(busy.id), "--reason", "Stopped by support"
    )
    assert code == 0 and "cancelled task" in out, out
    code, out = cli(
        store_url, config_file, "tasks", "cancel", str(busy.id), "--reason", "again", "--json"
    )
    result = json.loads(out)
    assert result["result"] == "already_finished"
    assert result["task"]["state"] == str(TaskState.CANCELLED)
    assert result["task"]["cancel_reason"] == "Stopped by support"


@pytest.mark.parametrize(
    "args, message",
    [
        (["tasks", "show", "999"], "task 999 does not exist"),
        (["tasks", "events", "999"], "task 999 does not exist"),
        (["tasks", "cancel", "999", "--reason", "x"], "task 999 does not exist"),
        (["tasks", "list", "--state", "bogus"], "unknown state 'bogus'"),
        (["tasks", "cancel", "1", "--reason", "  "], "--reason must not be empty"),
    ],
)
def test_tasks_cli_bad_input_is_one_error_line(
    sqlite_url: str, config_file: Path, args: list[str], message: str
) -> None:
    TaskRig(sqlite_url).close()  # a migrated store
    code, out = cli(sqlite_url, config_file, *args)
    assert code == 1, out
    assert out.strip().splitlines() == [f"error: {out.strip().split('error: ', 1)[1]}"]
    assert message in out


async def test_task_events_appear_in_trace_under_the_correlation_id(
    store_url: str, config_file: Path
) -> None:
    rig = TaskRig(store_url)
    try:
        conv = CONV.__class__(CONV.channel, CONV.thread_id, CONV.recipient, correlation_id="corr-9")
        handle = await rig.tasks.start(conv, "Traced")
        await handle.ack("on it")
        await handle.complete(["the result"])
    finally:
        rig.close()
    code, out = cli(store_url, config_file, "trace", "corr-9", "--json")
    assert code == 0, out
    kinds = [e["kind"] for e in json.loads(out)["events"]]
    assert [k for k in kinds if k.startswith("task.")] == [
        "task.started", "task.ack_sent", "task.result_sent",
    ]  # fmt: skip
    assert sum(k.startswith("delivery") for k in kinds) == 2  # the ack and the result
    code, out = cli(store_url, config_file, "trace", f"task:{handle.id}", "--json")
    assert code == 0 and json.loads(out)["correlation_id"] == "corr-9"
    code, out = cli(store_url, config_file, "trace", "task:424242")
    assert code == 1 and "task 424242 does not exist" in out


async def test_health_reports_late_and_timed_out_tasks(store_url: str, config_file: Path) -> None:
    rig = TaskRig(store_url)
    try:
        await rig.tasks.start(CONV, "Times out", contract=Contract(finish_within=5))
        late = await rig.tasks.start(CONV, "Late", contract=Contract(progress_every=5))
        await late.ack("on it")
        rig.clock.advance(6)
        await rig.tick()
    finally:
        rig.close()
    code, out = cli(store_url, config_file, "health", "--json")
    report = json.loads(out)
    assert code != 0  # a timed-out task fails the default health check
    metrics = report["metrics"]
    assert (metrics["tasks_timed_out"], metrics["tasks_late"], metrics["tasks_open"]) == (1, 1, 1)
    failing = [c["name"] for c in report["checks"] if not c["ok"]]
    assert "tasks_timed_out" in failing and "tasks_late" not in failing
