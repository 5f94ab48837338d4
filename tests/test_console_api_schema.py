"""Schemathesis against the live console API (its own /openapi.json), on SQLite and PostgreSQL:
no 5xx, every response matches its documented status, content type and schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _console import console_server, seed_store
from relaybox.store import open_store

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is not installed (it is in the dev extra)")
    return found


def test_api_conforms_to_its_openapi_document(store_url: str, tmp_path: Path):
    seed_store(store_url)
    store = open_store(store_url)
    try:
        with console_server(store) as base:
            result = subprocess.run(
                [
                    _schemathesis(),
                    "run",
                    f"{base}/openapi.json",
                    "--checks",
                    CHECKS,
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--max-examples",
                    "10",
                    "--seed",
                    "12",
                    "--no-shrink",
                    "--request-timeout",
                    "20",
                    "--no-color",
                    "--generation-database",
                    ":memory:",
                    "--suppress-health-check",
                    "all",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=tmp_path,
            )
    finally:
        store.close()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
