"""Chaos on PostgreSQL: four worker processes, SIGKILLs and cut connections, nothing lost.

Four ``relaybox worker`` processes deliver replies of 1-6 parts to a real HTTP receiver on
loopback that plays the users' phones (it shows each Idempotency-Key once and counts every
copy on the wire). While they work, workers are SIGKILLed and restarted, and the PostgreSQL
connections of others are cut with pg_terminate_backend. Afterwards:

* every part was shown exactly once, every thread in enqueue order, no part lost;
* every request on the wire carried the GUID stored for its part at enqueue;
* a part went on the wire twice only if it was *open* at a disruption of the process that
  sent it: its first copy reached the receiver before that process was killed (or its
  connection cut), and the next copy after. A process can hold at most ``concurrency`` open
  parts, so duplicates <= disruptions x concurrency;
* the attempts table accounts for every request on the wire: each has an attempt row by the
  process that sent it, except sends of a SIGKILLed process that it had no time to record
  (at most ``concurrency`` per kill).

The default size runs in the normal suite; ``pytest --chaos-full`` (or
``RELAYBOX_CHAOS_FULL=1``) runs the full one: 2,000 replies over 200 threads. The random seed
is printed; ``RELAYBOX_CHAOS_SEED=<seed>`` replays the same plan and disruption schedule.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from _harness import (
    WORKER_HEADER,
    WorkerProcess,
    check_user_view,
    check_wire_guids,
    enqueue_replies,
    env_flag,
    read_store,
    summarize,
    terminate_backends,
    worker_pid,
    write_config,
)
from conftest import PG_URL
from relaybox.models import Status
from relaybox.testing.loopback import LoopbackReceiver

WORKERS = 4
CONCURRENCY = 16
LEASE_SECONDS = 2.0


@dataclass(frozen=True)
class Size:
    replies: int
    threads: int
    kills: int
    cuts: int


SMALL = Size(replies=200, threads=40, kills=5, cuts=3)
FULL = Size(replies=2000, threads=200, kills=16, cuts=8)


@dataclass(frozen=True)
class Disruption:
    """A kill or a cut, and where the wire was when it happened."""

    kind: str  # "kill" | "cut"
    tag: str  # the incarnation it hit
    wire_before: int  # requests on the wire just before it
    wire_after: int  # ... and once the requests its victim had already made had arrived


def _size(request: pytest.FixtureRequest) -> Size:
    full = bool(request.config.getoption("--chaos-full", default=False))
    return FULL if full or env_flag("RELAYBOX_CHAOS_FULL") else SMALL


@pytest.mark.slow
def test_chaos_four_workers_kills_and_cut_connections(
    pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    size = _size(request)
    seed = int(os.environ.get("RELAYBOX_CHAOS_SEED") or random.randrange(1_000_000))
    print(f"chaos seed {seed} (rerun with RELAYBOX_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    started = time.monotonic()
    incarnations: dict[str, WorkerProcess] = {}
    disruptions: list[Disruption] = []

    with LoopbackReceiver(dedup=True) as rx:
        plan = enqueue_replies(
            pg_url,
            write_config(tmp_path / "enqueue.toml", receiver=rx),
            replies=size.replies,
            threads=size.threads,
            max_parts=6,
            seed=seed,
        )
        counter = Counter[int]()

        def start(slot: int) -> WorkerProcess:
            counter[slot] += 1
            tag = f"s{slot}-i{counter[slot]}"
            worker = WorkerProcess(
                tag=tag,
                db_url=pg_url,
                config=write_config(
                    tmp_path / f"{tag}.toml",
                    receiver=rx,
                    tag=tag,
                    lease_seconds=LEASE_SECONDS,
                ),
                log=tmp_path / f"{tag}.log",
                concurrency=CONCURRENCY,
            ).start()
            incarnations[tag] = worker
            return worker

        def settle() -> int:
            """Let requests already sent by a victim reach the receiver's list."""
            time.sleep(0.05)
            return len(rx.wire)

        slots = {slot: start(slot) for slot in range(WORKERS)}
        events = ["kill"] * size.kills + ["cut"] * size.cuts
        rng.shuffle(events)
        # Each disruption fires once the users have seen a given share of the parts, so all
        # of them land while delivery is in full swing, whatever the speed of the machine.
        marks = sorted(rng.sample(range(plan.parts // 20, plan.parts * 17 // 20), len(events)))
        try:
            for kind, mark in zip(events, marks, strict=True):
                assert rx.wait_until_seen(mark, timeout=120), _logs(incarnations)
                slot = rng.randrange(WORKERS)
                victim = slots[slot]
                before = len(rx.wire)
                if kind == "kill":
                    victim.kill()
                    disruptions.append(Disruption(kind, victim.tag, before, settle()))
                    slots[slot] = start(slot)
                else:
                    # A process just restarted may not have connected yet: try again shortly
                    # (up to 10 s: on a loaded 2-core machine a restart can take over 2 s).
                    for _ in range(500):
                        if terminate_backends(PG_URL, victim.pid) > 0:
                            disruptions.append(Disruption(kind, victim.tag, before, settle()))
                            break
                        time.sleep(0.02)
                        before = len(rx.wire)
            assert rx.wait_until_seen(plan.parts, timeout=180), _logs(incarnations)
            _wait_until_recorded(pg_url, timeout=60)
            stopped = {w.tag: w.stop() for w in slots.values() if w.alive()}
            assert set(stopped.values()) == {0}, f"exit statuses {stopped}\n{_logs(incarnations)}"
        finally:
            for worker in incarnations.values():
                if worker.alive():
                    worker.kill()

        stored = read_store(pg_url)
        check_user_view(rx, plan)
        on_wire = check_wire_guids(rx, stored)
        senders = [headers[WORKER_HEADER] for headers in rx.wire_headers]
        guids = [body["guid"] for body in rx.wire]

    assert {d.status for d in stored.deliveries} == {Status.DELIVERED}
    assert len(stored.deliveries) == plan.replies
    kills = [d for d in disruptions if d.kind == "kill"]
    cuts = [d for d in disruptions if d.kind == "cut"]
    assert (len(kills), len(cuts)) == (size.kills, size.cuts)

    # Nothing goes on the wire from a process after it was killed.
    for kill in kills:
        assert kill.tag not in senders[kill.wire_after :], f"{kill.tag} sent after its kill"

    # Duplicates: only parts open at a disruption of their sender, within the bound.
    duplicates = sum(count - 1 for count in on_wire.values())
    assert duplicates == rx.duplicates_on_wire
    assert duplicates <= len(disruptions) * CONCURRENCY
    positions: dict[str, list[int]] = defaultdict(list)
    for index, guid in enumerate(guids):
        positions[guid].append(index)
    unexplained = [
        (guid, first, then)
        for guid, indexes in positions.items()
        for first, then in itertools.pairwise(indexes)
        if not any(
            d.tag == senders[first] and first < d.wire_after and then >= d.wire_before
            for d in disruptions
        )
    ]
    assert unexplained == [], "parts sent twice without a disruption of their sender"

    # The attempts table accounts for every send, except unrecorded sends of killed processes.
    tag_of_pid = {w.pid: tag for tag, w in incarnations.items()}
    recorded = Counter((a.guid, tag_of_pid[worker_pid(a)]) for a in stored.attempts if a.guid)
    sent = Counter(zip(guids, senders, strict=True))
    missing: Counter[str] = Counter()
    for (guid, tag), count in sent.items():
        missing[tag] += max(0, count - recorded[(guid, tag)])
    killed = {d.tag for d in kills}
    assert {tag for tag, n in missing.items() if n and tag not in killed} == set()
    assert all(n <= CONCURRENCY for n in missing.values())

    summarize(
        f"chaos (seed {seed})",
        {
            "workers": WORKERS,
            "replies": plan.replies,
            "threads": size.threads,
            "parts": plan.parts,
            "kills": len(kills),
            "cuts": len(cuts),
            "incarnations": len(incarnations),
            "wire_requests": len(guids),
            "duplicates_on_wire": duplicates,
            "duplicate_bound": len(disruptions) * CONCURRENCY,
            "attempt_rows": len(stored.attempts),
            "unrecorded_sends_of_killed": sum(missing.values()),
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def _wait_until_recorded(db_url: str, timeout: float) -> None:
    """The users have seen everything; wait for the workers to record the last parts."""
    deadline = time.monotonic() + timeout
    while {str(d.status) for d in read_store(db_url).deliveries} != {"delivered"}:
        assert time.monotonic() < deadline, "deliveries not all recorded as delivered"
        time.sleep(0.2)


def _logs(incarnations: dict[str, WorkerProcess]) -> str:
    return "\n".join(f"--- {tag}\n{w.output()[-2000:]}" for tag, w in incarnations.items())
