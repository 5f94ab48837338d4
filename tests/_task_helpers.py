"""Helpers for task tests: a config with short contracts, a manual clock, delivering the outbox."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import relaybox
from _outbox_helpers import fast_config
from relaybox.clock import ManualClock
from relaybox.models import Status
from relaybox.tasks import Conversation
from relaybox.tasks.api import Tasks
from relaybox.tasks.supervisor import TaskSupervisor
from relaybox.transports.memory import MemoryTransport
from relaybox.worker.worker import Worker

CONV = Conversation("mem", "chat-1", "+15550100")


def task_config(**tasks: Any) -> relaybox.Config:
    """``mem`` channel; contract: ack 5 s, progress every 30 s, finish within 300 s."""
    base = fast_config()
    body = {
        "ack_within_seconds": 5,
        "progress_every_seconds": 30,
        "finish_within_seconds": 300,
        "liveness_seconds": 20,
        **tasks,
    }
    from relaybox.config import parse_tasks

    return relaybox.Config(
        worker=base.worker,
        channels=base.channels,
        tasks=parse_tasks(body, "(test)"),
        source="(test)",
    )


class TaskRig:
    """A store, a manual clock, ``rb.tasks`` on that clock, one supervisor, one transport."""

    def __init__(self, url: str, **tasks: Any) -> None:
        self.rb = relaybox.open(url, config=task_config(**tasks))
        self.clock = ManualClock(start=time.time())
        self.tasks = Tasks(self.rb.store, self.rb.config, self.rb.task_settings, self.clock)
        self.transport = MemoryTransport()
        self.supervisor = self.new_supervisor("sup-1")

    def new_supervisor(self, worker_id: str) -> TaskSupervisor:
        return TaskSupervisor(
            self.rb.store,
            worker_id,
            self.rb.task_settings,
            self.rb.config.channels,
            self.rb.config.worker.lease_seconds,
            self.clock,
        )

    async def tick(self) -> Any:
        return await self.supervisor.tick_once()

    async def deliver(self, timeout: float = 10.0) -> None:
        """Run a worker (no task supervision) until nothing is queued or sending."""
        worker = Worker(
            self.rb.store,
            self.rb.config,
            transports={"mem": self.transport},
            supervise_tasks=False,
        )
        run = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            while True:
                # One read: two (queued, then sending) could miss a delivery moving between them.
                everything = await self.rb.deliveries(limit=10_000)
                pending = [d for d in everything if d.status in (Status.QUEUED, Status.SENDING)]
                if not pending:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"deliveries still pending: {pending}")
                await asyncio.sleep(0.01)
        finally:
            worker.stop()
            await run

    def seen(self) -> list[str]:
        return self.transport.texts()

    def close(self) -> None:
        self.rb.close()
