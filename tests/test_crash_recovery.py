"""A real worker process, SIGKILLed at random points again and again, loses and repeats nothing.

The user is a :class:`LoopbackReceiver` (real HTTP on loopback) in this process; the worker is
``python -m relaybox worker`` in its own process. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from _harness import (
    WorkerProcess,
    check_user_view,
    check_wire_guids,
    enqueue_replies,
    read_store,
    summarize,
    worker_pid,
    write_config,
)
from relaybox.models import Status
from relaybox.testing.loopback import LoopbackReceiver


def _wait_all_delivered(db_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {str(d.status) for d in read_store(db_url).deliveries}
        if statuses == {"delivered"} or time.monotonic() > deadline:
            assert statuses == {"delivered"}
            return
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "dedup", [True, False], ids=["dedup-receiver", "no-dedup-receiver-with-reconcile"]
)
def test_worker_killed_at_random_points_resumes_without_loss_or_repeat(
    store_url: str, tmp_path: Path, dedup: bool
) -> None:
    """Kill the worker with SIGKILL five times while it delivers, restart it, let it finish.

    With a deduplicating receiver, a part on the wire at a kill is resent under the same GUID
    (the receiver drops the copy). With a receiver that shows every copy, the worker marks each
    send before making it and, after a kill, asks the receiver's status endpoint (reconcile)
    instead of resending: the user must still see each part once.
    """
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    delay = random.Random(seed + 1)

    def slow_phone(body: dict[str, Any]) -> None:
        time.sleep(delay.uniform(0.0, 0.01))  # widens the window in which a kill hits a send
        return None

    kills = 5 if dedup else 3
    with LoopbackReceiver(dedup=dedup, behaviour=slow_phone) as rx:
        config = write_config(tmp_path / "enqueue.toml", receiver=rx)
        plan = enqueue_replies(store_url, config, replies=60, threads=6, max_parts=4, seed=seed)
        thresholds = sorted(rng.sample(range(plan.parts // 10, plan.parts * 8 // 10), kills))
        incarnations: list[WorkerProcess] = []

        def start(number: int) -> WorkerProcess:
            tag = f"w-{number}"
            worker = WorkerProcess(
                tag=tag,
                db_url=store_url,
                config=write_config(
                    tmp_path / f"{tag}.toml",
                    receiver=rx,
                    tag=tag,
                    dedup=dedup,
                    reconcile=not dedup,
                ),
                log=tmp_path / f"{tag}.log",
                concurrency=8,
            ).start()
            incarnations.append(worker)
            return worker

        try:
            for number, at in enumerate(thresholds):
                worker = start(number)
                assert rx.wait_until_seen(at, timeout=60), worker.output()
                time.sleep(rng.uniform(0.0, 0.02))
                worker.kill()
            final = start(kills)
            assert rx.wait_until_seen(plan.parts, timeout=90), final.output()
            _wait_all_delivered(store_url, timeout=30)
            assert final.stop() == 0, final.output()
        finally:
            for worker in incarnations:
                if worker.alive():
                    worker.kill()

        stored = read_store(store_url)
        check_user_view(rx, plan)
        on_wire = check_wire_guids(rx, stored)
        resent = sum(count - 1 for count in on_wire.values())
        status_checks = len(rx.status_requests)

    assert {d.status for d in stored.deliveries} == {Status.DELIVERED}
    assert len(stored.deliveries) == plan.replies
    # At least one reply was cut by a kill and finished by a later incarnation.
    pids_per_delivery: dict[int, set[int]] = defaultdict(set)
    for attempt in stored.attempts:
        pids_per_delivery[attempt.delivery_id].add(worker_pid(attempt))
    resumed = sum(1 for pids in pids_per_delivery.values() if len(pids) > 1)
    assert resumed >= 1
    if dedup:
        assert resent >= 1, "no kill caught a part on the wire: the test proved nothing"
        assert rx.duplicates_on_wire == resent
    else:
        assert resent == 0, "a part was sent twice to a receiver that shows every copy"
        assert status_checks >= 1, "no kill left a send open: reconcile was never exercised"
    summarize(
        f"crash recovery ({store_url.split(':')[0]}, seed {seed})",
        {
            "replies": plan.replies,
            "parts": plan.parts,
            "kills": kills,
            "wire": len(rx.wire),
            "resent": resent,
            "reconcile_checks": status_checks,
            "deliveries_resumed_by_another_process": resumed,
        },
    )
