"""The reference agent (examples/reference_agent.py) runs end to end, as a user would run it:
agent and worker processes SIGKILLed mid-way, each reply part seen once, one booking, and the
long task's acknowledgement and result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "reference_agent.py"


def test_the_reference_agent_tells_the_crash_story_and_ends_right(
    store_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--db", store_url, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "SIGKILL agent" in out and "SIGKILL worker" in out
    saw = out.split("5. What Alice saw")[1].split("(")[0]
    assert [line.strip() for line in saw.strip().splitlines()] == [
        "1. On it: looking for a wine to go with the duck.",  # the task's ack
        "2. Booked a table for 2 at 19:30 at Chez Ada.",
        "3. Your confirmation number is R-0001.",
        "4. Anything else?",
        "5. For the duck: a 2019 Chinon from the Loire.",  # the task's result
    ]
    assert "restaurant bookings: 1; model requests: 3" in out
    assert "platform -> bot msg-1001: done" in out  # the duplicate webhook did nothing
    assert "turn-1:m1:model (model_request) for alice replayed" in out  # trace shows the resume
    assert "Result: each part once, in order; one booking; one reply" in out
    assert len((tmp_path / "restaurant").read_text().splitlines()) == 1
