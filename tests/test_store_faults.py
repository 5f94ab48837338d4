"""Store faults reach callers as one clear StoreUnavailable error and lose nothing stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import relaybox
from _outbox_helpers import fast_config
from relaybox.store import Tx


def _fill_up(tx: Tx) -> None:
    """Cap the SQLite file at its current size: the next page it needs is 'disk full'."""
    tx.execute_script("PRAGMA max_page_count = 1")


async def test_full_disk_is_a_clear_error_and_keeps_what_was_stored(tmp_path: Path):
    rb = relaybox.open(f"sqlite:///{tmp_path}/full.db", config=fast_config())
    try:
        kept = await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["kept"])
        # max_page_count below the current size is clamped to it: the file cannot grow.
        await rb.store.run(_fill_up)
        with pytest.raises(relaybox.StoreUnavailable, match="database or disk is full"):
            await rb.enqueue(channel="mem", thread_id="t", recipient="a", parts=["x" * 4000] * 40)
        stored = await rb.delivery(kept.delivery.id)
        assert stored.parts[0].body == "kept"
        assert len(await rb.deliveries()) == 1
    finally:
        rb.close()


def test_file_that_is_not_a_database(tmp_path: Path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a sqlite file at all" * 100)
    run = subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", f"sqlite:///{junk}", "deliveries", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: not a relaybox database") and "Traceback" not in run.stderr
    assert junk.read_bytes() == b"this is not a sqlite file at all" * 100
