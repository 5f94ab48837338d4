"""examples/telegram_bot.py runs end to end, as a user would run it, on both stores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "telegram_bot.py"


def test_the_telegram_example_runs_offline(store_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--db", store_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "update 1001 again: 200 (a duplicate)" in done.stdout
    assert "no secret: 401" in done.stdout
    assert '1. You asked: "what\'s the weather in Oslo?".' in done.stdout
    assert "Result: each part once, duplicate ignored, forgery refused" in done.stdout
