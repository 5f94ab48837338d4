"""A pydantic-ai agent process for tests/test_integration_pydantic_ai.py's crash test.

Usage: python _pydantic_ai_agent.py STORE_URL WORKDIR KILL_AT
Answers one inbound message ("charge me 12 EUR") in its turn (rb.turn, redelivered until
taken) with a FunctionModel agent whose tool charges a fake card. The card (WORKDIR/card) is
a ledger that dedupes by idempotency key, as a real payment API does; WORKDIR/attempts counts
how often the tool body ran, WORKDIR/model_calls how often the model was asked. With
KILL_AT=in_tool the process writes WORKDIR/reached after the charge and hangs inside the tool;
with KILL_AT=next_model it hangs in the second model request (the charge's outcome is
stored). The test SIGKILLs it there and runs it again with KILL_AT="".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import relaybox
from relaybox.config import parse_config
from relaybox.integrations.pydantic_ai import RelayboxDurability

URL, WORKDIR, KILL_AT = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


def append(name: str, line: str) -> None:
    with open(WORKDIR / name, "a") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def charge_card(key: str, amount: int) -> str:
    """The fake payment API: one charge per idempotency key."""
    ledger = WORKDIR / "card"
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        known, charge_id, _amount = line.split()
        if known == key:
            return charge_id
    charge_id = f"ch_{len(ledger.read_text().splitlines()) + 1 if ledger.exists() else 1}"
    append("card", f"{key} {charge_id} {amount}")
    return charge_id


async def hang() -> None:
    append("reached", KILL_AT)
    await asyncio.Event().wait()


async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    append("model_calls", str(os.getpid()))
    answered = any(isinstance(m, ModelResponse) for m in messages)
    if not answered:
        return ModelResponse(parts=[ToolCallPart("charge", {"amount": 1200})])
    if KILL_AT == "next_model":
        await hang()
    return ModelResponse(parts=[TextPart("Paid 12.00 EUR.")])


async def charge(ctx: RunContext[None], amount: int) -> str:
    """Charge the user's card (amount in cents)."""
    append("attempts", str(os.getpid()))
    charge_id = charge_card(relaybox.current_step().key, amount)
    if KILL_AT == "in_tool":
        await hang()
    return charge_id


async def main() -> None:
    config = parse_config(
        {
            "steps": {"lease_seconds": 0.5, "poll_interval_seconds": 0.02},
            "turns": {"lease_seconds": 0.5, "retry_delay_seconds": 0.01},
            "channels": {"mem": {"transport": "memory"}},
        }
    )
    rb = relaybox.open(URL, config=config)
    durability = RelayboxDurability(rb, retry_safe=True)  # the card dedupes by key
    agent = Agent(FunctionModel(model), name="cashier", tools=[charge], capabilities=[durability])
    while True:  # the platform redelivers until the bot takes the message
        async with rb.turn(
            channel="mem",
            external_id="msg-1",
            thread_id="chat-1",
            resource_id="alice",
            text="charge me 12 EUR",
        ) as turn:
            if turn.outcome == "in_progress":  # the killed attempt's lease has not lapsed
                await asyncio.sleep(0.05)
                continue
            if not turn.should_run:
                print(json.dumps({"outcome": str(turn.outcome)}), flush=True)
                break
            with relaybox.agent_run(turn):
                result = await agent.run(turn.inbound.text or "")
            reply = await turn.reply([result.output, "Anything else?"])
            print(
                json.dumps(
                    {
                        "outcome": str(turn.outcome),
                        "output": result.output,
                        "delivery": reply.delivery.id,
                    }
                ),
                flush=True,
            )
            break
    rb.close()


asyncio.run(main())
