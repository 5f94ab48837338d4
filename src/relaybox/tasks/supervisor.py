"""The task supervisor: a service inside ``relaybox worker`` that keeps contract deadlines.

Every worker runs one; each pass is :func:`relaybox.tasks.transitions.tick`, which first takes
(or keeps) the supervisor lease, so with many workers exactly one acts on each deadline, and
when that worker dies (even by SIGKILL) another takes over once the lease lapsed
(``[worker] lease_seconds``). Its first pass after a start is the startup recovery.

Tasks a pass timed out or failed are handed to the worker's task-end hooks after the commit
(``Worker.on_task_end``): the place to cancel the work itself. A hook that raises is logged and
does not stop the supervisor.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping

from relaybox.clock import SYSTEM, Clock
from relaybox.config import ChannelConfig
from relaybox.store import Store
from relaybox.tasks import transitions as tr
from relaybox.tasks.models import Task
from relaybox.tasks.settings import LiveSettings
from relaybox.worker.service import Service

log = logging.getLogger("relaybox.tasks")

TaskHook = Callable[[Task], Awaitable[None] | None]


class TaskSupervisor:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        settings: LiveSettings,
        channels: Mapping[str, ChannelConfig],
        lease_seconds: float,
        clock: Clock = SYSTEM,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.settings = settings
        self.channels = channels
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.hooks: list[TaskHook] = []
        self.leader = False
        self.ticks = 0

    def lease(self) -> float:
        """How long a supervisor's lease lasts: a dead one is replaced within this."""
        return max(self.lease_seconds, 2 * self.settings.current.tick_seconds)

    async def tick_once(self) -> tr.TickReport:
        current = self.settings.current
        if await self.store.read(tr.supervised_by_another(self.worker_id, self.clock.now())):
            report = tr.TickReport(leader=False)
            self._note_leadership(report)
            return report
        report = await self.store.run(
            tr.tick(
                self.worker_id, self.clock.now(), self.lease(), current.scan_limit, self.channels
            )
        )
        self._note_leadership(report)
        for task_id, action in report.acted:
            log.info("task %s: %s", task_id, action)
        for task in report.ended:
            await self._run_hooks(task)
        return report

    def _note_leadership(self, report: tr.TickReport) -> None:
        self.ticks += 1
        if report.leader != self.leader:
            log.info(
                "worker %s %s task supervision",
                self.worker_id,
                "took over" if report.leader else "no longer holds",
            )
            self.leader = report.leader

    async def _run_hooks(self, task: Task) -> None:
        for hook in self.hooks:
            try:
                result = hook(task)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:  # noqa: BLE001 - one hook must not stop the supervisor
                log.warning("task-end hook for task %s failed: %s", task.id, error)

    def service(self) -> Service:
        return Service(
            "task-supervisor",
            self._pass,
            every=lambda: self.settings.current.tick_seconds,
            clock=self.clock,
        )

    async def _pass(self) -> None:
        await self.tick_once()

    async def release(self) -> None:
        """On a clean stop: hand the lease over at once instead of letting it lapse."""
        if self.leader:
            await self.store.run(tr.release_supervision(self.worker_id))
            self.leader = False
