"""The ``relaybox`` command as an operator meets it: real processes, real stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"}
    full_env = {**inherited, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "relaybox", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=60,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "relaybox.toml").write_text(
        '[channels.sms]\ntransport = "webhook"\nurl = "http://127.0.0.1:9/send"\n'
        "max_part_bytes = 100\n",
        encoding="utf-8",
    )
    return tmp_path


def enqueue(workdir: Path, db: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "--db",
        db,
        "enqueue",
        "--channel",
        "sms",
        "--thread",
        "chat-1",
        "--to",
        "alice",
        *extra,
        cwd=workdir,
    )


def test_enqueue_list_show_cancel_round_trip(workdir: Path, store_url: str):
    made = enqueue(
        workdir, store_url, "--part", "one", "--part", "two", "--reply-key", "r1", "--json"
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["created"] is True and len(created["parts"]) == 2
    again = json.loads(
        enqueue(
            workdir, store_url, "--part", "one", "--part", "two", "--reply-key", "r1", "--json"
        ).stdout
    )
    assert again["created"] is False and again["id"] == created["id"]
    assert [p["guid"] for p in again["parts"]] == [p["guid"] for p in created["parts"]]

    listed = json.loads(cli("--db", store_url, "deliveries", "list", "--json", cwd=workdir).stdout)
    assert [d["id"] for d in listed] == [created["id"]]
    shown = cli("--db", store_url, "deliveries", "show", str(created["id"]), cwd=workdir)
    assert shown.returncode == 0 and created["parts"][0]["guid"] in shown.stdout
    assert "cursor (start_index) 0/2" in shown.stdout

    cancelled = cli("--db", store_url, "deliveries", "cancel", str(created["id"]), cwd=workdir)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    twice = cli("--db", store_url, "deliveries", "cancel", str(created["id"]), cwd=workdir)
    assert twice.returncode == 1 and "already cancelled" in twice.stderr
    filtered = cli(
        "--db", store_url, "deliveries", "list", "--status", "cancelled", "--json", cwd=workdir
    )
    assert len(json.loads(filtered.stdout)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--part", ""], "part 1 is empty"),
        (["--part", "x" * 101], "part 1 is 101 bytes"),
        (["--part", "ok", "--part", "   "], "part 2 is empty"),
    ],
)
def test_bad_enqueue_input_fails_clearly_and_keeps_what_is_stored(
    workdir: Path, sqlite_url: str, args: list[str], message: str
):
    assert enqueue(workdir, sqlite_url, "--part", "kept").returncode == 0
    bad = enqueue(workdir, sqlite_url, *args)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error:") and message in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    listed = json.loads(cli("--db", sqlite_url, "deliveries", "list", "--json", cwd=workdir).stdout)
    assert len(listed) == 1


def test_non_utf8_argument_is_rejected(workdir: Path, sqlite_url: str):
    run = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"relaybox",
            b"--db",
            sqlite_url.encode(),
            b"enqueue",
            b"--channel",
            b"sms",
            b"--thread",
            b"t",
            b"--to",
            b"a",
            b"--part",
            b"caf\xe9",
        ],
        capture_output=True,
        cwd=workdir,
        timeout=60,
    )
    assert run.returncode == 2  # refused before any command runs, like any bad argument
    assert run.stderr.startswith(b"error: argument 11 is not valid UTF-8 text")
    assert run.stderr.count(b"\n") == 1


def test_unknown_channel(workdir: Path, sqlite_url: str):
    run = cli(
        "--db",
        sqlite_url,
        "enqueue",
        "--channel",
        "telegram",
        "--thread",
        "t",
        "--to",
        "a",
        "--part",
        "hi",
        cwd=workdir,
    )
    assert run.returncode == 1
    assert "unknown channel 'telegram'; configured channels: sms" in run.stderr


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[channels.sms\ntransport = 1", "is not valid TOML"),
        ('[channels.sms]\ntransport = "pigeon"', "channels.sms.transport must be one of"),
        ("[worker]\nlease_seconds = -1", "worker.lease_seconds must be greater than 0"),
        ("[worker]\nconcurency = 4", "unknown key worker.concurency"),
        ('[channels.sms]\ntransport = "webhook"', "channels.sms.url is required"),
        (
            '[channels.sms]\ntransport = "webhook"\nurl = "ftp://x"',
            "channels.sms.url must be an http",
        ),
    ],
)
def test_malformed_config_is_one_clear_line(tmp_path: Path, toml: str, message: str):
    (tmp_path / "relaybox.toml").write_text(toml, encoding="utf-8")
    run = cli("deliveries", "list", cwd=tmp_path)
    assert run.returncode == 1
    assert message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "relaybox.db").exists()


def test_missing_config_file_given_explicitly(tmp_path: Path):
    run = cli("--config", str(tmp_path / "nope.toml"), "deliveries", "list", cwd=tmp_path)
    assert run.returncode == 1 and "cannot read config" in run.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody@127.0.0.1:1/none",
        "sqlite:////nonexistent-dir/x.db",
        "mysql://localhost/x",
        "sqlite://relative-without-slash.db",
    ],
)
def test_unreachable_store_url(tmp_path: Path, url: str):
    run = cli("--db", url, "deliveries", "list", cwd=tmp_path)
    assert run.returncode == 1
    expected = "error: no relaybox database at" if "nonexistent" in url else "error: cannot open"
    assert run.stderr.startswith(expected) and "Traceback" not in run.stderr


def test_store_url_from_environment(workdir: Path, tmp_path: Path):
    db = f"sqlite:///{tmp_path}/env.db"
    assert (
        cli(
            "enqueue",
            "--channel",
            "sms",
            "--thread",
            "t",
            "--to",
            "a",
            "--part",
            "x",
            cwd=workdir,
            env={"RELAYBOX_DB": db},
        ).returncode
        == 0
    )
    assert (tmp_path / "env.db").exists()


def test_migrate_is_idempotent(tmp_path: Path, store_url: str):
    first = cli("--db", store_url, "migrate", "--json", cwd=tmp_path)
    second = cli("--db", store_url, "migrate", "--json", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0
    assert json.loads(first.stdout)["applied"]  # a fresh store gets every migration
    assert json.loads(second.stdout)["applied"] == []
    assert json.loads(second.stdout)["version"] == json.loads(first.stdout)["version"]


def test_show_unknown_delivery(tmp_path: Path, sqlite_url: str):
    assert cli("--db", sqlite_url, "migrate", cwd=tmp_path).returncode == 0
    run = cli("--db", sqlite_url, "deliveries", "show", "42", cwd=tmp_path)
    assert run.returncode == 1 and "delivery 42 does not exist" in run.stderr


READ_ONLY_COMMANDS = [
    ["deliveries", "list"],
    ["deliveries", "show", "1"],
    ["failures"],
    ["trace", "1"],
    ["gaps"],
    ["inbound", "list"],
    ["steps", "list"],
    ["memory", "resources"],
    ["memory", "show", "--resource", "alice"],
    ["turns", "list"],
    ["turns", "show", "1"],
    ["tasks", "list"],
    ["tasks", "show", "1"],
    ["tasks", "events", "1"],
    ["workers"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_inspection_never_creates_a_store(tmp_path: Path, command: list[str]):
    run = cli("--db", f"sqlite:///{tmp_path}/typo.db", *command, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == (
        f"error: no relaybox database at {tmp_path}/typo.db"
        " (check --db; `relaybox migrate` creates one)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_broken_config_warns_and_inspection_answers(workdir: Path, store_url: str):
    assert enqueue(workdir, store_url, "--part", "hi").returncode == 0
    (workdir / "relaybox.toml").write_text(
        f'[store]\nurl = "{store_url}"\n[worker]\nconcurency = 3\n', encoding="utf-8"
    )
    run = cli("deliveries", "list", "--json", cwd=workdir)
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("warning: ") and "worker.concurency" in run.stderr
    assert [d["status"] for d in json.loads(run.stdout)] == ["queued"]
    # Commands that change things still refuse a broken config.
    assert enqueue(workdir, store_url, "--part", "no").returncode == 1


def test_worker_announces_delivering_only_once_sigterm_is_graceful(workdir: Path, tmp_path: Path):
    """SIGTERM at the very moment "delivering on" appears stops the worker gracefully (exit 0).

    No sleep: the line is printed after the signal handlers are installed.
    """
    db = f"sqlite:///{tmp_path}/w.db"
    assert cli("--db", db, "migrate", cwd=workdir).returncode == 0
    for _ in range(3):
        worker = subprocess.Popen(
            [sys.executable, "-u", "-m", "relaybox", "--db", db, "worker"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert " delivering on " in line, line + (worker.stderr.read() if worker.stderr else "")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err


def test_version(tmp_path: Path):
    run = cli("--version", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("relaybox ") and run.stderr == ""
    assert run.stdout.split()[1][0].isdigit()


def test_long_parts_from_files_and_stdin(workdir: Path, store_url: str):
    long_text = "x" * 60 + "\nsecond line ✓"
    (workdir / "one.txt").write_text(long_text + "\n", encoding="utf-8")
    (workdir / "two.txt").write_text("two", encoding="utf-8")
    config = workdir / "relaybox.toml"
    config.write_text(config.read_text().replace("max_part_bytes = 100", "max_part_bytes = 4096"))
    made = enqueue(workdir, store_url, "--part-file", "one.txt", "--part-file", "two.txt", "--json")
    assert made.returncode == 0, made.stderr
    assert [p["body"] for p in json.loads(made.stdout)["parts"]] == [long_text, "two"]
    piped = subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", store_url, "enqueue", "--channel", "sms",
         "--thread", "chat-2", "--to", "bob", "--part", "first", "--part", "-", "--json"],
        input="from stdin\n", capture_output=True, text=True, cwd=workdir, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert [p["body"] for p in json.loads(piped.stdout)["parts"]] == ["first", "from stdin"]
    (workdir / "bad.txt").write_bytes(b"\xff\xfe not utf-8")
    for extra, message in (
        (["--part-file", "bad.txt"], "error: the part in bad.txt is not UTF-8 text"),
        (["--part-file", "missing.txt"], "error: --part-file missing.txt: no such file"),
        (["--part", "a", "--part-file", "two.txt"], "error: use either --part or --part-file"),
        ([], "error: a reply needs at least one part"),
    ):
        run = enqueue(workdir, store_url, *extra)
        assert run.returncode == 1 and run.stderr.startswith(message), run.stderr
    listed = json.loads(cli("--db", store_url, "deliveries", "list", "--json", cwd=workdir).stdout)
    assert len(listed) == 2  # nothing stored by the refused ones


def test_resolve_without_a_flag_explains_both_choices(tmp_path: Path, sqlite_url: str):
    run = cli("--db", sqlite_url, "deliveries", "resolve", "1", cwd=tmp_path)
    assert run.returncode == 1
    assert "--arrived" in run.stderr and "--not-arrived" in run.stderr
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["deliveries", "list"], "no deliveries match\n"),
        (["tasks", "list"], "no tasks match\n"),
        (["tasks", "list", "--late"], "no tasks match these filters\n"),
        (["turns", "list"], "no turns match\n"),
        (["turns", "list", "--status", "failed"], "no turns match these filters\n"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_empty_listings_say_so(tmp_path: Path, sqlite_url: str, command: list[str], message: str):
    assert cli("--db", sqlite_url, "migrate", cwd=tmp_path).returncode == 0
    run = cli("--db", sqlite_url, *command, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == message
