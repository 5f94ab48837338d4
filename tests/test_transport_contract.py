"""The transport contract kit (relaybox.testing.contract) run against every built-in network
transport, each pointed at its local fake (no internet)."""

from __future__ import annotations

import pytest

from relaybox.testing.contract import CHECKS, run_check
from relaybox.testing.subjects import SUBJECTS


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("transport", sorted(SUBJECTS))
async def test_contract(transport: str, check: str) -> None:
    async with SUBJECTS[transport]() as subject:
        await run_check(check, subject)
