"""``relaybox demo``: the story of a reply that survives a worker killed mid-send.

A 4-part reply goes to Alice's phone (a real HTTP receiver on loopback that honours
Idempotency-Key). The phone shows part 3, but the worker is SIGKILLed before the phone's answer
reaches it. A new worker resumes from the persisted cursor, resends part 3 under the same GUID
(the phone discards the copy), sends part 4, and Alice sees each part exactly once, in order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

import relaybox
from relaybox.models import Delivery
from relaybox.testing.loopback import LoopbackReceiver

PARTS = (
    "Found 3 flights to Lisbon on Friday.",
    "Cheapest: TAP 1351, 07:05, 212 EUR.",
    "Fastest: easyJet 7621, 2h40, 239 EUR.",
    "Want me to hold the TAP seat for 24 h?",
)
LEASE_SECONDS = 1.5  # short so the story is quick; the default is 5 s

console = Console(highlight=False)


def run_demo(*, keep: bool = True) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="relaybox-demo-"))
    db_url = f"sqlite:///{workdir}/demo.db"
    phone_answers: dict[str, int] = {"part3": 0}

    def phone(body: dict[str, Any]) -> Literal["surface_and_hang"] | None:
        # The first copy of part 3 reaches the screen, but the answer never gets back.
        if body.get("index") == 2 and phone_answers["part3"] == 0:
            phone_answers["part3"] += 1
            return "surface_and_hang"
        return None

    with LoopbackReceiver(behaviour=phone, hang_seconds=10) as rx:
        config_path = workdir / "relaybox.toml"
        config_path.write_text(
            f"[worker]\nlease_seconds = {LEASE_SECONDS}\npoll_interval_seconds = 0.02\n\n"
            f'[channels.imessage]\ntransport = "webhook"\nurl = "{rx.url}"\n'
            "send_timeout_seconds = 30\n",
            encoding="utf-8",
        )
        console.print(
            Panel(
                "A worker crashes halfway through a 4-part reply. Without care, the retry starts "
                "from the top and Alice gets parts 1 and 2 twice. relaybox gives every part a "
                "stable GUID at enqueue and persists a resume cursor after each acknowledged part.",
                title="relaybox demo",
                border_style="cyan",
            )
        )
        console.print(f"store: {db_url}\nAlice's phone: {rx.url} (honours Idempotency-Key)\n")

        rb = relaybox.open(db_url, config=str(config_path))
        try:
            delivery = asyncio.run(_enqueue(rb))
            _step("1. The agent enqueues a 4-part reply; each part gets its GUID now")
            for part in delivery.parts:
                console.print(f"   part {part.index + 1}  [dim]{part.guid}[/]  {part.body}")

            _step("2. A worker process starts delivering")
            first = _start_worker(db_url, config_path, workdir / "worker-1.log")
            if not rx.wait_until_seen(3, timeout=20):
                first.kill()
                console.print("[red]the worker did not deliver in time; see worker-1.log[/]")
                return 1
            time.sleep(0.2)
            _step(
                "3. Part 3 reached the phone, but its answer did not reach the worker: SIGKILL now"
            )
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            console.print(f"   worker pid {first.pid} killed (exit {first.returncode})")
            _show_state(rb, delivery.id, "   stored state after the crash")

            _step(
                f"4. A new worker starts; it takes over once the dead one's lease lapses "
                f"(~{LEASE_SECONDS:g} s)"
            )
            started = time.monotonic()
            second = _start_worker(db_url, config_path, workdir / "worker-2.log")
            try:
                ok = _wait_delivered(rb, delivery.id, timeout=30)
                took = time.monotonic() - started
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=15)
            if not ok:
                console.print("[red]the reply was not delivered in time; see worker-2.log[/]")
                return 1
            console.print(
                f"   resumed and finished in {took:.1f} s; "
                f"worker stopped cleanly on SIGTERM (exit {second.returncode})"
            )

            _step("5. What Alice saw")
            for n, text in enumerate(rx.texts(), 1):
                console.print(f"   [green]{n}.[/] {text}")
            wire_guids = [str(b["guid"]) for b in rx.wire]
            console.print(
                f"   {len(rx.wire)} requests on the wire, {rx.duplicates_on_wire} duplicate "
                f"(part 3 resent under its GUID {wire_guids[2][:8]}..., discarded by the phone); "
                f"{len(rx.seen)} shown"
            )
            _step("6. The attempt timeline (delivery_attempts, append-only)")
            _show_attempts(rb, delivery.id)
            correct = rx.texts() == list(PARTS)
        finally:
            rb.close()
    verdict = (
        "[bold green]each part exactly once, in order[/]"
        if correct
        else ("[bold red]the user's view is wrong[/]")
    )
    console.print(f"\nResult: {verdict}")
    if keep:
        console.print(
            f"\nInspect it yourself (relaybox is {_command()}):\n"
            f"  {_command()} --db {db_url} deliveries show {delivery.id}\n"
            f"  sqlite3 {workdir}/demo.db 'SELECT * FROM delivery_attempts'"
        )
    return 0 if correct else 1


def _command() -> str:
    """How to run relaybox from this shell: the bare name if it is on the PATH, else its path."""
    beside = Path(sys.executable).parent / "relaybox"
    on_path = shutil.which("relaybox")
    if on_path is not None and Path(on_path).resolve() == beside.resolve():
        return "relaybox"
    return str(beside) if beside.exists() else f"{sys.executable} -m relaybox"


async def _enqueue(rb: relaybox.Relaybox) -> Delivery:
    result = await rb.enqueue(
        channel="imessage",
        thread_id="chat-42",
        recipient="alice@example.com",
        parts=list(PARTS),
        reply_key="inbound-7f3a:reply",
    )
    return result.delivery


def _start_worker(db_url: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relaybox",
                "--db",
                db_url,
                "--config",
                str(config),
                "worker",
                "--concurrency",
                "4",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _wait_delivered(rb: relaybox.Relaybox, delivery_id: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(rb.delivery(delivery_id)).status == "delivered":
            return True
        time.sleep(0.05)
    return False


def _show_state(rb: relaybox.Relaybox, delivery_id: int, title: str) -> None:
    d = asyncio.run(rb.delivery(delivery_id))
    console.print(
        f"{title}: status [bold]{d.status}[/], resume cursor start_index="
        f"[bold]{d.start_index}[/] of {d.part_count}, lease held by the dead worker "
        f"until it lapses"
    )


def _show_attempts(rb: relaybox.Relaybox, delivery_id: int) -> None:
    attempts = asyncio.run(rb.attempts(delivery_id))
    table = Table("t+ms", "part", "guid", "worker", "outcome", "latency ms")
    start = attempts[0].started_at if attempts else 0.0
    workers: dict[str, str] = {}
    for a in attempts:
        label = workers.setdefault(a.worker_id, f"worker-{len(workers) + 1}")
        table.add_row(
            f"{(a.started_at - start) * 1000:.0f}",
            "-" if a.part_index is None else str(a.part_index + 1),
            (a.guid or "")[:8],
            label,
            a.outcome,
            "-" if a.latency_ms is None else f"{a.latency_ms:.1f}",
        )
    console.print(table)
    console.print(
        "   [dim]part 3 has no row from worker-1: it was killed before it could record "
        "the send; worker-2's row says 'duplicate' because the phone already had it[/]"
    )


def _step(text: str) -> None:
    console.print(f"\n[bold cyan]{text}[/]")
