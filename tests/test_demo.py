"""The README's first command ends in ``relaybox demo``: it must tell a true story."""

from __future__ import annotations

import subprocess
import sys


def test_demo_kills_a_worker_and_the_user_sees_each_part_once(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "relaybox", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "killed (exit -9)" in run.stdout
    assert "start_index=2 of 4" in run.stdout
    assert "1 duplicate" in run.stdout
    assert "each part exactly once, in order" in run.stdout
    for n, text in enumerate(["Found 3 flights", "Cheapest", "Fastest", "Want me to hold"], 1):
        assert f"{n}. {text}" in run.stdout
