"""The operator's questions through the real CLI, on a seeded SQLite and PostgreSQL store:
failures (list, filters, --by, show), inbound, trace, gaps, health (exit codes), prune."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relaybox
from _outbox_helpers import fast_config
from relaybox.audit import FailureAuditor, FailureReport
from relaybox.cli import app
from relaybox.store import Tx

runner = CliRunner()
NOW = time.time()
SEND_ERRORS = [("chat-1", "502"), ("chat-1", "503"), ("chat-1", "504"), ("chat-2", "timeout")]


def cli(url: str, *args: str, config: Path | None = None) -> tuple[int, str]:
    base = ["--db", url] + (["--config", str(config)] if config else [])
    result = runner.invoke(app, [*base, *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def cli_json(url: str, *args: str) -> object:
    code, output = cli(url, *args, "--json")
    assert code == 0, output
    return json.loads(output)


@pytest.fixture
def seeded(store_url: str) -> Iterator[dict[str, object]]:
    """Failures from several queues, stages, chats and channels; inbound messages."""
    rb = relaybox.open(store_url, config=fast_config())
    auditor = FailureAuditor(rb.store)
    reports = [
        FailureReport(
            queue="deliveries",
            job_id="11",
            stage="send",
            channel="sms",
            thread_id=thread,
            error_type="TransientError",
            error=message,
            payload={"guid": f"g-{message}", "body": "Found 3 flights."},
            terminal=False,
            at=NOW - 60,
        )
        for thread, message in SEND_ERRORS
    ]
    reports += [
        FailureReport(
            queue="agent",
            stage="llm",
            thread_id="chat-1",
            error="context too long",
            error_type="ContextOverflow",
            job_id=f"run-{n}",
            at=NOW - 30,
        )
        for n in range(2)
    ]
    reports.append(
        FailureReport(
            queue="tools",
            stage="tool",
            thread_id="chat-3",
            error="calendar 500",
            job_id="step-1",
            at=NOW - 2 * 3600,
        )
    )
    ids = [rb.store.run_sync(_insert(auditor, r)) for r in reports]

    async def inbound() -> dict[str, int]:
        silent = await rb.record_inbound(
            channel="mem",
            external_id="SM-silent",
            thread_id="chat-1",
            resource_id="+1",
            text="are you there?",
        )
        quiet = await rb.record_inbound(
            channel="mem", external_id="SM-quiet", thread_id="chat-1", resource_id="+1"
        )
        await rb.mark_no_reply_needed(quiet.inbound.id, "a reaction")
        return {"silent": silent.inbound.id, "quiet": quiet.inbound.id}

    messages = asyncio.run(inbound())
    rb.close()
    yield {"failure_ids": ids, **messages}


def _insert(auditor: FailureAuditor, report: FailureReport):  # type: ignore[no-untyped-def]
    from relaybox.audit.record import to_row
    from relaybox.audit.recorder import insert_failure

    return insert_failure(to_row(report, auditor.config.max_payload_bytes))


# -- failures -------------------------------------------------------------------------------


def test_which_jobs_failed_in_the_last_hour(store_url: str, seeded: dict[str, object]):
    recent = cli_json(store_url, "failures", "--since", "1h")
    assert isinstance(recent, list) and len(recent) == 6
    assert "calendar 500" not in [f["message"] for f in recent]
    assert [f["created_at"] for f in recent] == sorted(
        (f["created_at"] for f in recent), reverse=True
    )
    everything = cli_json(store_url, "failures")
    assert isinstance(everything, list) and len(everything) == 7
    limited = cli_json(store_url, "failures", "--limit", "2")
    assert isinstance(limited, list) and len(limited) == 2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--queue", "deliveries"], {"502", "503", "504", "timeout"}),
        (["--thread", "chat-1"], {"502", "503", "504", "context too long"}),
        (["--channel", "sms", "--thread", "chat-2"], {"timeout"}),
        (["--stage", "llm"], {"context too long"}),
        (["--stage", "tool", "--since", "1h"], set()),
        (["--error-type", "TransientError", "--job", "11"], {"502", "503", "504", "timeout"}),
        (["--terminal", "--since", "1d"], {"context too long", "calendar 500"}),
    ],
)
def test_failure_filters(
    store_url: str, seeded: dict[str, object], options: list[str], expected: set[str]
):
    rows = cli_json(store_url, "failures", *options)
    assert isinstance(rows, list)
    assert {f["message"] for f in rows} == expected


def test_are_all_failures_from_one_chat_stage_queue_channel(
    store_url: str, seeded: dict[str, object]
):
    def grouped(by: str) -> list[tuple[object, int]]:
        rows = cli_json(store_url, "failures", "--since", "1h", "--by", by)
        assert isinstance(rows, list)
        return [(g["key"], g["failures"]) for g in rows]

    assert grouped("thread") == [("chat-1", 5), ("chat-2", 1)]
    assert grouped("queue") == [("deliveries", 4), ("agent", 2)]
    assert grouped("stage") == [("send", 4), ("llm", 2)]
    assert grouped("channel") == [("sms", 4), (None, 2)]
    assert grouped("error") == [("TransientError", 4), ("ContextOverflow", 2)]
    jobs = cli_json(store_url, "failures", "--since", "1h", "--by", "queue")
    assert isinstance(jobs, list) and [g["jobs"] for g in jobs] == [1, 2]
    code, text = cli(store_url, "failures", "--since", "1h", "--by", "thread")
    assert code == 0 and "chat-1" in text and "5" in text


def test_what_payload_triggered_this(store_url: str, seeded: dict[str, object]):
    first = seeded["failure_ids"][0]  # type: ignore[index]
    shown = cli_json(store_url, "failures", "show", str(first))
    assert isinstance(shown, dict)
    # The payload itself, not a string of JSON.
    assert shown["payload"] == {"body": "Found 3 flights.", "guid": "g-502"}
    assert shown["thread_id"] == "chat-1" and shown["payload_sha256"]
    code, raw = cli(store_url, "failures", "show", str(first), "--payload")
    assert code == 0 and json.loads(raw) == {"body": "Found 3 flights.", "guid": "g-502"}
    code, text = cli(store_url, "failures", "show", str(first))
    assert code == 0 and "payload (json" in text and '"guid": "g-502"' in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["failures", "--by", "colour"], "--by must be one of"),
        (["failures", "--since", "an hour"], "--since: 'an hour' is not a duration"),
        (["failures", "show", "999"], "failure 999 does not exist"),
        (["trace", "nothing-here"], "nothing to trace for 'nothing-here'"),
        (["inbound", "list", "--state", "lost"], "unknown state 'lost'"),
        (["prune", "--table", "memory"], "unknown table 'memory'"),
        (["gaps", "--older-than", "-5m"], "is not a duration"),
    ],
)
def test_bad_input_is_one_clear_line(
    store_url: str, seeded: dict[str, object], args: list[str], message: str
):
    code, output = cli(store_url, *args)
    assert code == 1 and message in output and "Traceback" not in output


# -- inbound, trace, gaps ------------------------------------------------------------------


def test_inbound_list_show_trace_and_gaps(store_url: str, seeded: dict[str, object]):
    listed = cli_json(store_url, "inbound", "list", "--thread", "chat-1")
    assert isinstance(listed, list)
    assert {m["external_id"]: m["state"] for m in listed} == {
        "SM-silent": "received",
        "SM-quiet": "no_reply_needed",
    }
    shown = cli_json(store_url, "inbound", "show", str(seeded["silent"]))
    assert isinstance(shown, dict) and shown["text"] == "are you there?"
    traced = cli_json(store_url, "trace", f"inbound:{seeded['quiet']}")
    assert isinstance(traced, dict)
    assert [e["kind"] for e in traced["events"]] == ["inbound.received", "inbound.no_reply_needed"]
    code, text = cli(store_url, "trace", f"inbound:{seeded['silent']}")
    assert code == 0 and "are you there?" in text
    gaps = cli_json(store_url, "gaps", "--older-than", "0s")
    assert isinstance(gaps, list) and [g["external_id"] for g in gaps] == ["SM-silent"]
    assert cli_json(store_url, "gaps") == []  # not unanswered for 5 minutes yet
    code, text = cli(store_url, "gaps", "--older-than", "0s")
    assert code == 0 and "SM-silent" not in text and "are you there?" in text
    code, text = cli(store_url, "gaps")
    assert code == 0 and "no gaps" in text


# -- health ---------------------------------------------------------------------------------


def test_health_exits_non_zero_past_thresholds(
    store_url: str, seeded: dict[str, object], tmp_path: Path
):
    report = cli_json(store_url, "health", "--max-gaps", "0")
    assert isinstance(report, dict) and report["ok"] is True
    assert report["metrics"]["job_failures"] == 6 and report["metrics"]["gaps"] == 0
    code, output = cli(store_url, "health", "--gap-age", "0s")
    assert code == 2 and "gaps" in output and "unhealthy" in output
    code, _ = cli(store_url, "health", "--gap-age", "0s", "--max-gaps", "1")
    assert code == 0

    rb = relaybox.open(store_url, config=fast_config())
    rb.store.run_sync(_parked_delivery(rb))
    rb.close()
    code, output = cli(store_url, "health", "--json")
    checks = {c["name"]: c for c in json.loads(output)["checks"]}
    assert code == 2 and not checks["unknown"]["ok"] and checks["unknown"]["value"] == 1
    assert checks["failure_rate"]["value"] == 0  # parked is not failed
    assert cli(store_url, "health", "--max-unknown", "1")[0] == 0

    toml = tmp_path / "relaybox.toml"
    toml.write_text(
        '[channels.mem]\ntransport = "memory"\n[health]\nmax_unknown = 5\nmax_queue_depth = 0\n'
    )
    rb = relaybox.open(store_url, config=fast_config())
    rb.store.run_sync(_queued_delivery(rb))
    rb.close()
    code, output = cli(store_url, "health", "--json", config=toml)
    checks = {c["name"]: c for c in json.loads(output)["checks"]}
    assert code == 2 and not checks["queue_depth"]["ok"] and checks["unknown"]["ok"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[health]\nmax_failure_rate = 2\n")
    code, output = cli(store_url, "health", config=bad)
    # A broken config does not block inspection: a warning, then the answer with defaults.
    assert "warning:" in output and "max_failure_rate must be a number between 0 and 1" in output
    assert code == 2 and "unhealthy" in output


def _parked_delivery(rb: relaybox.Relaybox):  # type: ignore[no-untyped-def]
    from relaybox.outbox.enqueue import EnqueueUnit, build_request

    request = build_request(rb.config.channel("mem"), thread_id="p", recipient="r", parts=["x"])

    def unit(tx: Tx) -> int:
        d = EnqueueUnit(request)(tx).delivery
        tx.execute_script(f"UPDATE deliveries SET status = 'unknown' WHERE id = {d.id}")
        return d.id

    return unit


def _queued_delivery(rb: relaybox.Relaybox):  # type: ignore[no-untyped-def]
    from relaybox.outbox.enqueue import EnqueueUnit, build_request

    request = build_request(rb.config.channel("mem"), thread_id="q", recipient="r", parts=["x"])
    return EnqueueUnit(request)


# -- prune ----------------------------------------------------------------------------------


def test_prune_dry_run_then_prune(store_url: str, seeded: dict[str, object]):
    dry = cli_json(store_url, "prune", "--older-than", "1h", "--dry-run")
    assert isinstance(dry, list)
    assert {r["table"]: r["deleted"] for r in dry} == {
        "failures": 1,
        "attempts": 0,
        "deliveries": 0,
        "inbound": 0,
        "unanswered_inbound": 0,
    }
    assert len(cli_json(store_url, "failures")) == 7  # type: ignore[arg-type]
    code, text = cli(store_url, "prune", "--older-than", "1h", "--batch-size", "1")
    assert code == 0 and "deleted" in text and "failures" in text
    assert len(cli_json(store_url, "failures")) == 6  # type: ignore[arg-type]
    # The message marked "no reply needed" goes; the unanswered one is a gap and stays ...
    only = cli_json(store_url, "prune", "--older-than", "0s", "--table", "inbound")
    assert isinstance(only, list) and [(r["table"], r["deleted"]) for r in only] == [("inbound", 1)]
    # ... until its own table is named.
    named = cli_json(store_url, "prune", "--older-than", "0s", "--table", "unanswered_inbound")
    assert isinstance(named, list)
    assert [(r["table"], r["deleted"]) for r in named] == [("unanswered_inbound", 1)]
    default = cli_json(store_url, "prune")  # 30 days: nothing that old
    assert isinstance(default, list) and all(r["deleted"] == 0 for r in default)


def test_empty_listings_say_so(store_url: str):
    relaybox.open(store_url, config=fast_config()).close()
    for args, message in (
        (["deliveries", "list"], "no deliveries match"),
        (["failures"], "no failures match"),
        (["failures", "--by", "thread"], "no failures match"),
        (["inbound", "list"], "no inbound messages match"),
        (["steps", "list"], "no steps match"),
        (["memory", "resources"], "no memory stored yet"),
    ):
        code, output = cli(store_url, *args)
        assert code == 0 and output.strip() == message, (args, output)
