"""Turn handlers for tests that resume turns through the CLI or a worker process."""

from __future__ import annotations

import relaybox


async def answer_hello(turn: relaybox.Turn) -> None:
    """Reply "hello" and keep the exchange in the history."""
    await turn.history.append("user", turn.inbound.text or "(no text)")
    await turn.reply(["hello"], history=[("assistant", "hello")])


def not_async(turn: relaybox.Turn) -> None:
    """A handler that is not an async function (refused when loaded)."""
