"""Turn handlers for tests that resume turns through the CLI or a worker process, and a
way to let leases lapse without sleeping."""

from __future__ import annotations

import asyncio

import relaybox
from relaybox.store import Tx


async def answer_hello(turn: relaybox.Turn) -> None:
    """Reply "hello" and keep the exchange in the history."""
    await turn.history.append("user", turn.inbound.text or "(no text)")
    await turn.reply(["hello"], history=[("assistant", "hello")])


def not_async(turn: relaybox.Turn) -> None:
    """A handler that is not an async function (refused when loaded)."""


async def expire_leases(rb: relaybox.Relaybox) -> None:
    """Let time pass for leases without sleeping: every running turn's and step's lease is
    made to have lapsed, as it would once its process has been dead for longer than it."""

    def unit(tx: Tx) -> None:
        tx.execute_script("UPDATE turns SET lease_expires_at = 0 WHERE status = 'running'")
        tx.execute_script("UPDATE steps SET lease_expires_at = 0 WHERE status = 'running'")

    await rb.store.run(unit)


async def hang(turn: relaybox.Turn) -> None:
    """A handler that never finishes (waits for an event nobody sets)."""
    await asyncio.Event().wait()
