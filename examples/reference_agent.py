"""The reference agent: a pydantic-ai chat bot behind a (fake) chat platform, made crash-safe
by relaybox, killed twice, and still right. One command, no network, no API key:

    python examples/reference_agent.py [--db postgresql://...]

The cast, each a real process or server on loopback:

* the **platform** (this script): delivers the user's message to the bot's inbound webhook,
  and redelivers it until the bot answers, as chat platforms do;
* the **phone** (a LoopbackReceiver): what the user sees; it honours Idempotency-Key;
* the **agent** (``reference_agent.py agent``): an HTTP webhook that opens the message's turn
  (``rb.turn``: recorded once, duplicates answered "done"), runs a pydantic-ai agent whose
  ``FunctionModel`` calls a booking tool and then starts a long task with a contract (finding a
  wine: the user is told at once that it started, and gets the result later), and replies in
  three parts through the outbox;
* the **worker** (``relaybox worker``): delivers the reply to the phone.

The story: the agent is SIGKILLed right after the restaurant confirmed the booking, before
the tool's outcome was stored. The platform redelivers; a new agent process resumes the turn:
the model's first answer is replayed from the store (the model is not asked again), the
booking runs again under the same idempotency key (the restaurant returns the same booking),
the wine task starts (acknowledged to the user), and the reply is enqueued once. Then the
worker is SIGKILLed in the middle of that reply; a
new worker resumes at the cursor. The user sees each part once, in order, then the task's result,
and the restaurant has one booking. See docs/integrations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import Tool

import relaybox
from relaybox.integrations.pydantic_ai import RelayboxDurability, history_entries, load_history
from relaybox.tasks import Contract, Conversation
from relaybox.tasks.api import TaskHandle
from relaybox.testing.loopback import LoopbackReceiver
from relaybox.turns.api import Turn

HERE = Path(__file__).resolve()
LEASE = 1.0  # seconds: short, so a dead process's work is taken over quickly in the story


# -- the agent process ------------------------------------------------------------------------


def run_agent(db: str, config: str, workdir: Path, crash_after_booking: bool) -> None:
    """The bot: an inbound webhook on 127.0.0.1 (its port written to WORKDIR/agent.port)."""
    rb = relaybox.open(db, config=config)

    def note(name: str, line: str) -> None:
        with open(workdir / name, "a") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    def think(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        """The "model": books what the user asked for, starts the wine search, confirms."""
        note("model_calls", f"{os.getpid()}")
        returned = {
            p.tool_name: p.content
            for m in messages
            for p in m.parts
            if isinstance(p, ToolReturnPart)
        }
        last = messages[-1].parts
        if "find_wine" in returned:
            booked = returned["book_table"]
            people, at, ref = booked["people"], booked["time"], booked["booking"]
            return ModelResponse(
                parts=[
                    TextPart(
                        f"Booked a table for {people} at {at} at Chez Ada.\n"
                        f"Your confirmation number is {ref}.\n"
                        "Anything else?"
                    )
                ]
            )
        if "book_table" in returned:
            return ModelResponse(parts=[ToolCallPart("find_wine", {"dish": "the duck"})])
        asked = " ".join(str(p.content) for p in last if isinstance(p, UserPromptPart))
        people = re.search(r"(\d+)\s*(?:people|persons|of us)?", asked)
        at = re.search(r"(\d{1,2}:\d{2})", asked)
        args = {"people": int(people.group(1)) if people else 2, "time": at[1] if at else "19:30"}
        return ModelResponse(parts=[ToolCallPart("book_table", args)])

    async def book_table(ctx: RunContext[Turn], people: int, time: str) -> dict[str, Any]:
        """Book a table at Chez Ada (the restaurant dedupes by idempotency key)."""
        key = relaybox.current_step().key
        booking = restaurant_book(workdir, key, people, time)
        if crash_after_booking:
            note("booked", booking)  # the restaurant has it; relaybox has no outcome yet
            await asyncio.Event().wait()  # ... and here the process is SIGKILLed
        return {"booking": booking, "people": people, "time": time}

    replied: dict[int, asyncio.Event] = {}  # turn id -> set once the turn's reply is enqueued
    running: set[asyncio.Task[Any]] = set()

    async def find_wine(ctx: RunContext[Turn], dish: str) -> str:
        """Start looking for a wine to go with ``dish``: a long task, answered later."""
        turn = ctx.deps
        where = Conversation(
            "chat", turn.thread_id, turn.resource_id, correlation_id=turn.correlation_id
        )
        summary = f"a wine for {dish}"
        contract = Contract(ack_within=30, progress_every=120, finish_within=300)
        key = f"{relaybox.current_step().key}:task"  # the same task if this step runs again
        handle = await rb.tasks.start(where, summary, contract=contract, task_key=key)
        await handle.ack(f"On it: looking for a wine to go with {dish}.")
        done = replied.setdefault(turn.id, asyncio.Event())

        async def search(handle: TaskHandle) -> list[str]:
            await done.wait()  # the booking confirmation goes out first
            await handle.progress(data={"wine_lists_checked": 3})
            return [f"For {dish}: a 2019 Chinon from the Loire."]

        work = asyncio.create_task(
            rb.tasks.run(where, summary, search, contract=contract, task_key=key)
        )
        running.add(work)
        work.add_done_callback(running.discard)
        return f"task {handle.id} started; the user was told"

    agent = Agent(
        FunctionModel(think),
        name="concierge",
        deps_type=Turn,
        # The restaurant dedupes by key, so after a crash the booking may simply run again.
        tools=[Tool(book_table, metadata={"relaybox": {"retry_safe": True}}), find_wine],
        capabilities=[RelayboxDurability(rb)],
    )

    async def on_message(message: dict[str, Any]) -> dict[str, Any]:
        async with rb.turn(
            channel="chat",
            external_id=message["message_id"],
            thread_id=f"chat-{message['chat_id']}",
            resource_id=message["sender"],
            text=message["text"],
        ) as turn:
            if not turn.should_run:  # done before, or running elsewhere: just acknowledge
                return {"outcome": str(turn.outcome)}
            with relaybox.agent_run(turn):
                history = await load_history(turn.history)
                result = await agent.run(turn.inbound.text, message_history=history, deps=turn)
            parts = result.output.split("\n")
            await turn.reply(parts, history=history_entries(result.new_messages()))
            replied.setdefault(turn.id, asyncio.Event()).set()
            return {"outcome": str(turn.outcome), "replied": parts}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
        body = json.loads(await reader.readexactly(int(length[1]) if length else 0))
        try:
            status, answer = 200, await on_message(body)
        except Exception as error:  # noqa: BLE001 - the platform sees a 500 and redelivers
            status, answer = 500, {"error": f"{type(error).__name__}: {error}"}
        data = json.dumps(answer).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(data), data)
        )
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        (workdir / "agent.port.tmp").write_text(str(port))
        (workdir / "agent.port.tmp").rename(workdir / "agent.port")
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def restaurant_book(workdir: Path, key: str, people: int, at: str) -> str:
    """The restaurant's booking API: one booking per idempotency key, like Stripe's."""
    ledger = workdir / "restaurant"
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    for line in lines:
        known, booking = line.split()[:2]
        if known == key:
            return booking
    booking = f"R-{len(lines) + 1:04d}"
    with open(ledger, "a") as file:
        file.write(f"{key} {booking} {people} {at}\n")
        file.flush()
        os.fsync(file.fileno())
    return booking


# -- the story (platform + phone + processes) -------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, *args], stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def start_agent(db: str, config: Path, workdir: Path, *, crash: bool) -> tuple[Any, str]:
    (workdir / "agent.port").unlink(missing_ok=True)
    args = [str(HERE), "agent", "--db", db, "--config", str(config), "--workdir", str(workdir)]
    process = start(args + (["--crash-after-booking"] if crash else []), workdir / "agent.log")
    wait_until(lambda: (workdir / "agent.port").exists(), 60, "the agent to listen", process)
    return process, f"http://127.0.0.1:{(workdir / 'agent.port').read_text()}/webhook"


def start_worker(db: str, config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    args = ["-m", "relaybox", "--db", db, "--config", str(config), "worker", "--concurrency", "4"]
    return start(args, workdir / "worker.log")


def wait_until(check: Any, timeout: float, what: str, process: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            raise SystemExit(f"error: a process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"error: timed out waiting for {what}")
        time.sleep(0.02)


def kill(process: subprocess.Popen[bytes], name: str) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    say(f"   SIGKILL {name} (pid {process.pid}, exit {process.returncode})")


def deliver(url: str, message: dict[str, Any], *, until_answered: bool = True) -> dict[str, Any]:
    """The platform's webhook delivery: redelivered until the bot acknowledges it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            answer: dict[str, Any] = httpx.post(url, json=message, timeout=30).json()
        except httpx.HTTPError as error:
            answer = {"outcome": f"no answer ({type(error).__name__})"}
        say(f"   platform -> bot {message['message_id']}: {answer.get('outcome')}")
        if not until_answered or answer.get("outcome") in ("new", "retry", "done"):
            return answer
        if time.monotonic() > deadline:
            raise SystemExit("error: the bot never answered the webhook")
        time.sleep(0.25)


def story(db: str | None, workdir: Path) -> int:
    db = db or f"sqlite:///{workdir}/relaybox.db"
    shown_once: dict[str, int] = {"part2": 0}

    def phone(body: dict[str, Any]) -> Literal["surface_and_hang"] | None:
        # The first copy of part 2 reaches the screen; the phone's answer never comes back.
        if body.get("index") == 1 and shown_once["part2"] == 0:
            shown_once["part2"] += 1
            return "surface_and_hang"
        return None

    message = {
        "message_id": "msg-1001",
        "chat_id": "42",
        "sender": "alice",
        "text": "Please book a table for 2 at 19:30",
    }
    with LoopbackReceiver(behaviour=phone, hang_seconds=30) as screen:
        config = workdir / "relaybox.toml"
        config.write_text(
            f"[worker]\nlease_seconds = {LEASE}\npoll_interval_seconds = 0.02\n\n"
            f"[steps]\nlease_seconds = {LEASE}\npoll_interval_seconds = 0.02\n\n"
            f"[turns]\nlease_seconds = {LEASE}\nretry_delay_seconds = 0.1\n\n"
            f'[channels.chat]\ntransport = "webhook"\nurl = "{screen.url}"\n'
            "send_timeout_seconds = 30\n",
            encoding="utf-8",
        )
        rb = relaybox.open(db, config=str(config))
        say(f"store {db}; Alice's phone {screen.url}")
        say(f'\n1. Alice writes "{message["text"]}"; the agent books, and is killed')
        agent, url = start_agent(db, config, workdir, crash=True)
        worker = start_worker(db, config, workdir)
        asking = subprocess.Popen(  # the platform's first delivery (it will get no answer)
            [sys.executable, "-c", f"import httpx; httpx.post({url!r}, json={message!r})"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: (workdir / "booked").exists(), 60, "the booking", agent)
        say(f"   the restaurant confirmed {(workdir / 'booked').read_text().strip()}")
        kill(agent, "agent")
        asking.wait(timeout=30)

        say("\n2. A new agent process; the platform redelivers the message")
        agent, url = start_agent(db, config, workdir, crash=False)
        answer = deliver(url, message)
        say(f"   bot replied: {answer.get('replied')}")

        say("\n3. The worker delivers the 3-part reply; it is killed after part 2 reached Alice")
        # Alice has seen the task's "On it" message and parts 1 and 2 of the reply.
        if not screen.wait_until_seen(3, timeout=60):
            raise SystemExit("error: the worker did not deliver part 2")
        kill(worker, "worker")
        worker = start_worker(db, config, workdir)
        if not screen.wait_until_seen(5, timeout=60):
            raise SystemExit("error: the new worker did not finish the reply and the task")
        say("   a new worker resumed at the cursor, finished the reply and sent the task result")

        say("\n4. The platform delivers the same message once more (a duplicate webhook)")
        deliver(url, message, until_answered=False)

        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)

        saw = screen.texts()
        bookings = (workdir / "restaurant").read_text().splitlines()
        model_calls = (workdir / "model_calls").read_text().splitlines()
        say("\n5. What Alice saw")
        for number, text in enumerate(saw, 1):
            say(f"   {number}. {text}")
        say(
            f"   ({len(screen.wire)} sends on the wire, {screen.duplicates_on_wire} duplicate"
            " discarded by the phone)"
        )
        say(f"   restaurant bookings: {len(bookings)}; model requests: {len(model_calls)}")
        deliveries = asyncio.run(rb.deliveries(thread_id="chat-42"))
        rb.close()

        say("\n6. The trace of the message (relaybox trace)")
        cli = [sys.executable, "-m", "relaybox", "--db", db, "--config", str(config)]
        trace = subprocess.run(
            [*cli, "trace", str(deliveries[0].correlation_id)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "160"},
        )
        say(trace.stdout.rstrip() or trace.stderr.rstrip())

    expected = [
        "On it: looking for a wine to go with the duck.",
        "Booked a table for 2 at 19:30 at Chez Ada.",
        "Your confirmation number is R-0001.",
        "Anything else?",
        "For the duck: a 2019 Chinon from the Loire.",
    ]
    # The model was asked three times in all: its first answer (book) was replayed after the
    # crash, not asked again. One reply delivery plus the task's two messages.
    ok = saw == expected and len(bookings) == 1 and len(model_calls) == 3
    ok = ok and len(deliveries) == 3 and sum(d.part_count == 3 for d in deliveries) == 1
    say(
        "\nResult: "
        + ("each part once, in order; one booking; one reply" if ok else "WRONG (see above)")
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="story", choices=["story", "agent"])
    parser.add_argument("--db", help="store URL (default: a SQLite file in the work dir)")
    parser.add_argument("--config")
    parser.add_argument("--workdir")
    parser.add_argument("--crash-after-booking", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="relaybox-agent-"))
    if args.role == "agent":
        run_agent(args.db, args.config, workdir, args.crash_after_booking)
        return 0
    return story(args.db, workdir)


if __name__ == "__main__":
    sys.exit(main())
