"""``relaybox transports`` and ``relaybox webhooks`` (the inbound app served on its own)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

import relaybox
from _harness import serving_process
from relaybox.inbound.query import list_inbound

HANDLER = """
import relaybox

async def handle(turn: relaybox.Turn) -> None:
    await turn.reply([f"echo: {turn.inbound.text}"])
"""


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaybox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_transports_lists_builtins_with_presets(tmp_path: Path) -> None:
    run = cli("transports", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = {row["name"]: row for row in json.loads(run.stdout)}
    assert {"telegram", "slack", "discord", "twilio", "webhook", "memory"} <= set(rows)
    assert rows["telegram"]["preset"]["max_part_chars"] == 4096
    assert rows["telegram"]["inbound"] is True and rows["memory"]["inbound"] is False
    assert "url" in rows["webhook"]["options"]


def test_webhooks_command_serves_the_inbound_app(store_url: str, tmp_path: Path) -> None:
    (tmp_path / "mybot.py").write_text(HANDLER, encoding="utf-8")
    (tmp_path / "relaybox.toml").write_text(
        '[channels.tg]\ntransport = "telegram"\n\n[channels.mem]\ntransport = "memory"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "TELEGRAM_WEBHOOK_SECRET": "s3cret",
    }
    bad = cli("webhooks", "--handler", "mybot:nothing", cwd=tmp_path, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: turn handler")
    no_inbound = cli(
        "webhooks", "--handler", "mybot:handle", "--channel", "mem", cwd=tmp_path, env=env
    )
    assert no_inbound.returncode == 1 and "has no inbound webhook" in no_inbound.stderr
    process, line = serving_process(
        "--db", store_url, "webhooks", "--handler", "mybot:handle", "--port", "0",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        match = re.search(r"http://127\.0\.0\.1:(\d+) \(/tg\)", line)
        assert match, line
        update = {"update_id": 5, "message": {"chat": {"id": 77}, "from": {"id": 77}, "text": "hi"}}
        headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
        url = f"http://127.0.0.1:{match.group(1)}/tg"
        assert httpx.post(url, json=update, headers=headers, timeout=10).status_code == 200
        assert httpx.post(url, json=update, timeout=10).status_code == 401

        async def replied() -> list[relaybox.InboundMessage]:
            async with relaybox.open(store_url, config=str(tmp_path / "relaybox.toml")) as rb:
                return await rb.store.read(list_inbound())

        deadline = time.monotonic() + 20
        while True:
            messages = asyncio.run(replied())
            if messages and messages[0].replies == 1:
                break
            assert time.monotonic() < deadline, messages
            time.sleep(0.05)
        assert [m.external_id for m in messages] == ["5"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert process.returncode == 0


def test_serve_mounts_the_inbound_app_outside_the_login(store_url: str, tmp_path: Path) -> None:
    """`relaybox serve --handler`: /inbound/<channel> checks the platform's signature, not the
    console's login, records an update once and runs the handler; the console still needs
    credentials."""
    (tmp_path / "mybot.py").write_text(HANDLER, encoding="utf-8")
    (tmp_path / "relaybox.toml").write_text(
        '[channels.tg]\ntransport = "telegram"\n\n[channels.mem]\ntransport = "memory"\n',
        encoding="utf-8",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAYBOX_CONSOLE_")},
        "PYTHONPATH": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "TELEGRAM_WEBHOOK_SECRET": "s3cret",
        "RELAYBOX_CONSOLE_ADMIN_TOKEN": "admin-token-123",
    }
    bad = cli("--db", store_url, "serve", "--handler", "mybot", cwd=tmp_path, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: turn handler"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    command = ["--db", store_url, "serve", "--port", "0", "--handler", "mybot:handle"]
    process, line = serving_process(*command, cwd=tmp_path, env=env)
    try:
        assert process.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:(\d+)/ \(login required\)", line)
        assert match, line
        assert "/inbound/tg" in process.stdout.readline()
        base = f"http://127.0.0.1:{match.group(1)}"
        assert httpx.get(f"{base}/api/v1/overview", timeout=10).status_code == 401
        assert httpx.get(f"{base}/", timeout=10).status_code == 303  # to the login page
        update = {"update_id": 9, "message": {"chat": {"id": 77}, "from": {"id": 77}, "text": "hi"}}
        url = f"{base}/inbound/tg"
        wrong = {"X-Telegram-Bot-Api-Secret-Token": "wrong"}
        assert httpx.post(url, json=update, headers=wrong, timeout=10).status_code == 401

        async def recorded() -> list[relaybox.InboundMessage]:
            async with relaybox.open(store_url, config=str(tmp_path / "relaybox.toml")) as rb:
                return await rb.store.read(list_inbound())

        assert asyncio.run(recorded()) == []  # the refused update stored nothing
        signed = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
        for _ in range(2):  # the second is Telegram's resend: a duplicate
            assert httpx.post(url, json=update, headers=signed, timeout=10).status_code == 200
        deadline = time.monotonic() + 20
        while True:
            messages = asyncio.run(recorded())
            if messages and messages[0].replies == 1:
                break
            assert time.monotonic() < deadline, messages
            time.sleep(0.05)
        assert [(m.external_id, m.duplicate_count) for m in messages] == [("9", 1)]
        assert httpx.get(f"{base}/inbound/mem", timeout=10).status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert process.returncode in (0, -signal.SIGTERM), process.returncode
