"""The worker: claims thread heads, runs one task per delivery, renews leases, shuts down cleanly.

One asyncio loop per process. Up to ``concurrency`` deliveries are in flight at once, never two
of one thread (the claim query only hands out thread heads). Several worker processes, on one
SQLite file or one PostgreSQL server, share the work through the store alone.

Everything the worker decides is reported to one :class:`Observer` (logs, metrics, spans and
the channel state of the workers registry are its listeners). Stopping: the first SIGTERM or
Ctrl-C stops claiming and lets each delivery finish its current part (up to
``shutdown_grace_seconds``); a second Ctrl-C abandons the parts in flight at once, leaving them
to the ambiguity rules (same GUID resend, or reconcile).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from relaybox.audit.deliveries import worker_failure
from relaybox.audit.recorder import FailureAuditor
from relaybox.clock import SYSTEM, Clock
from relaybox.config import Config
from relaybox.errors import ConfigError, StoreUnavailable
from relaybox.models import Delivery
from relaybox.observability import tracing
from relaybox.observability.channels import ChannelStates
from relaybox.observability.events import Listener, Observer
from relaybox.observability.logs import LogListener
from relaybox.outbox import transitions as tr
from relaybox.store import Store
from relaybox.store.base import WakeSource
from relaybox.tasks.settings import LiveSettings
from relaybox.tasks.supervisor import TaskHook, TaskSupervisor
from relaybox.transports.base import Transport
from relaybox.transports.registry import build_transports
from relaybox.worker.expirer import expirer_service
from relaybox.worker.heartbeat import heartbeat_service
from relaybox.worker.pacing import Pacer
from relaybox.worker.pruner import pruner_service
from relaybox.worker.registry import RegistryJob, describe_worker
from relaybox.worker.runner import CursorWriteFailed, DeliveryRunner, HeldDelivery, RunnerContext
from relaybox.worker.service import Service, ServiceGroup

log = logging.getLogger("relaybox.worker")

# With a backlog, at most this many claims in a row take reported next heads by id before a
# scan (which serves every thread in enqueue order) must run.
BY_ID_CLAIMS_PER_SCAN = 3
POLL_SECONDS = 0.05  # the claim poll when nothing notifies (SQLite, or LISTEN is down)
LISTENING_POLL_SECONDS = 1.0  # the safety-net poll while wake-ups arrive


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Deliver queued replies until :meth:`stop` is called (or SIGTERM/SIGINT arrives).

    >>> worker = Worker(store, config)            # doctest: +SKIP
    >>> await worker.run()                        # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        transports: Mapping[str, Transport] | None = None,
        concurrency: int | None = None,
        worker_id: str | None = None,
        clock: Clock = SYSTEM,
        supervise_tasks: bool = True,
        listeners: Sequence[Listener] = (),
        metrics_url: str | None = None,
    ) -> None:
        self.store = store
        self.supervise_tasks = supervise_tasks
        self.clock = clock
        self.config = config
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or config.worker.concurrency
        given = dict(transports or {})
        unknown = set(given) - set(config.channels)
        if unknown:
            raise ConfigError(
                f"transports given for unconfigured channels: {', '.join(sorted(unknown))}"
            )
        built = build_transports(config)
        built.update(given)
        self.transports: dict[str, Transport] = built
        self._held: dict[int, HeldDelivery] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        # What the next claim looks at: a scan for heads when something may have become
        # claimable that nobody named (an enqueue, a poll, a run that ended other than
        # delivered); otherwise the next heads the ack batches reported (no scan).
        self._scan_due = True
        self._next_heads: list[int] = []
        self._pacer = Pacer(config.channels)
        self._stop_signals = 0
        self.channel_states = ChannelStates(sorted(self.transports))
        self.observer = Observer([LogListener(self.worker_id), self.channel_states, *listeners])
        if tracing.tracing_configured():
            self.observer.add(tracing.SpanListener(self.worker_id))
        self.auditor = FailureAuditor(store, config.audit, on_fallback=self.observer.audit_fallback)
        self._ctx = RunnerContext(
            store,
            self.worker_id,
            self._pacer,
            self._stop.is_set,
            self.auditor,
            observer=self.observer,
            channels=self.channel_states,
            on_next_heads=self._heads_reported,
        )
        self.registry = RegistryJob(
            store,
            describe_worker(self.worker_id, sorted(self.transports), self.concurrency, metrics_url),
            config.worker.heartbeat_seconds,
            lambda: len(self._held),
            self.channel_states.snapshot,
            self._services_health,
        )
        self.notifier: WakeSource | None = store.connector.wake_source(self.transports, self.notify)
        self.task_settings = LiveSettings(config)
        self.task_supervisor = TaskSupervisor(
            store,
            self.worker_id,
            self.task_settings,
            config.channels,
            config.worker.lease_seconds,
            clock,
        )
        self.services = self._core_services()

    def _core_services(self) -> ServiceGroup:
        """The worker's background jobs, each a supervised service (``worker/service.py``).

        Other parts add theirs with ``worker.services.add(Service(...))`` before :meth:`run`.
        """
        cfg = self.config.worker
        group = ServiceGroup()
        group.add(
            heartbeat_service(
                self.store, self._held.values, cfg.lease_seconds, self.clock,
                self.observer.lease_lost,
            )
        )  # fmt: skip
        group.add(
            expirer_service(
                self.store,
                cfg.expire_interval_seconds,
                self.auditor,
                self.clock,
                by=self.worker_id,
                on_expired=self._expired_queued,
            )
        )
        group.add(self.registry.service(self.clock))
        pruner = pruner_service(self.store, self.config.retention, self._stop, self.clock)
        if pruner is not None:
            group.add(pruner)
        if self.notifier is not None:
            group.add(Service("wakeups", self.notifier.run, every=None, clock=self.clock))
        if self.supervise_tasks:
            group.add(self.task_supervisor.service())
        if self.task_settings.path is not None:
            group.add(self.task_settings.watch_service(clock=self.clock))
        return group

    def on_task_end(self, hook: TaskHook) -> None:
        """Call ``hook(task)`` when this worker's supervisor times out or fails a task.

        The place to cancel the work itself (the task's cancel hook). Runs after the commit;
        a hook that raises is logged.
        """
        self.task_supervisor.hooks.append(hook)

    def reload_settings(self) -> bool:
        """Re-read the config file's ``[tasks]`` section (what SIGHUP does)."""
        return self.task_settings.reload()

    # -- control -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; running deliveries stop at a part boundary."""
        self._stop.set()
        self._wake.set()
        self._slot_free.set()

    def stop_now(self) -> None:
        """Stop at once: cancel every delivery in flight (the part on the wire, if any, is
        resolved by the ambiguity rules: resent under its GUID or reconciled)."""
        self.stop()
        self.observer.worker_stopping_now(len(self._held))
        for held in list(self._held.values()):
            if held.task is not None:
                held.task.cancel()

    def _services_health(self) -> dict[str, dict[str, object]]:
        """What the registry publishes about each background service (``relaybox workers``)."""
        return {
            h.name: {
                "state": str(h.state),
                "healthy": h.healthy,
                "failures": h.failures,
                "consecutive_failures": h.consecutive_failures,
                "last_ok_at": h.last_ok_at,
                "last_error": h.last_error,
            }
            for h in self.services.health()
        }

    def _expired_queued(self, d: Delivery) -> None:
        self.observer.expired(d, None, "older than the channel's max age before it could be sent")

    def _on_signal(self, name: str) -> None:
        self._stop_signals += 1
        if self._stop_signals > 1 and name == "SIGINT":
            self.stop_now()
            return
        if self._stop_signals == 1:
            self.observer.worker_stopping(
                len(self._held), self.config.worker.shutdown_grace_seconds, name
            )
        self.stop()

    def notify(self) -> None:
        """Something was enqueued: claim now instead of at the next poll."""
        self._scan_due = True
        self._wake.set()

    def _heads_reported(self, ids: list[int]) -> None:
        """Deliveries became their thread's head (the reply before them was delivered)."""
        self._next_heads.extend(ids)
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._held)

    async def run(
        self,
        *,
        install_signal_handlers: bool = False,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Deliver until :meth:`stop` (or SIGTERM/SIGINT with ``install_signal_handlers``).

        ``on_ready`` is called once the signal handlers are in place: the CLI prints its
        "delivering on ..." line there, so whoever waits for that line may signal at once.
        """
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig.name)
            loop.add_signal_handler(signal.SIGHUP, self.reload_settings)
        if on_ready is not None:
            on_ready()
        await self.registry.register()
        self.services.start(self._stop)
        self.observer.worker_started(self.worker_id, sorted(self.transports), self.concurrency)
        try:
            await self._claim_loop()
        finally:
            await self._drain()
            self._stop.set()
            await self.services.close()
            await self._release_supervision()
            for transport in self.transports.values():
                await transport.aclose()
            await self.registry.deregister()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            self.observer.worker_stopped(self.worker_id)

    async def _release_supervision(self) -> None:
        try:
            await self.task_supervisor.release()
        except Exception as error:  # noqa: BLE001 - the lease lapses instead
            log.info("could not release task supervision (%s); its lease will lapse", error)

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        cfg = self.config.worker
        channels = sorted(self.transports)
        failures = 0
        # While the last claim came back full there is a backlog: then claim only once a
        # useful batch of slots is free, not one claim per finished delivery (each claim is a
        # transaction). Without a backlog, claim for whatever woke us, at once.
        refill = max(1, min(cfg.claim_batch, self.concurrency // 8))
        backlog = False
        by_id_in_a_row = 0
        while not self._stop.is_set():
            free = self.concurrency - len(self._held)
            if free <= 0 or (backlog and free < refill):
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if not (backlog or self._scan_due or self._next_heads):
                # Nothing claimable that we know of: wait for news, or poll. (Every wake-up
                # that brings news also sets _scan_due or _next_heads before it wakes us.)
                self._wake.clear()
                if not await self._sleep(self.poll_seconds()):
                    self._scan_due = True
                continue
            wanted = min(free, cfg.claim_batch)
            self._wake.clear()
            among: list[int] | None = None
            fair = not backlog or by_id_in_a_row < BY_ID_CLAIMS_PER_SCAN
            if self._next_heads and not self._scan_due and fair:
                # The heads the ack batches reported: claimed by id, a probe each, instead of
                # a scan that walks past every delivery in flight and every one behind them.
                # (A scan, every few claims, still hands out the oldest heads of other
                # threads first, so a backlog of busy threads cannot starve new ones.)
                among, self._next_heads = self._next_heads[:wanted], self._next_heads[wanted:]
                by_id_in_a_row += 1
            else:
                # A scan finds every head, the reported ones included.
                self._scan_due = False
                self._next_heads.clear()
                by_id_in_a_row = 0
            try:
                claimed = await self.store.run(
                    tr.claim(self.worker_id, channels, wanted, cfg.lease_seconds, among)
                )
            except StoreUnavailable as error:
                failures += 1
                delay = min(5.0, POLL_SECONDS * 2**failures)
                log.warning("claim failed (store unavailable), retrying in %.2fs: %s", delay, error)
                self._scan_due = True
                await self._sleep(delay)
                continue
            failures = 0
            for delivery in claimed:
                self.observer.claimed(delivery)
                self._start(delivery)
            if among is None:
                backlog = len(claimed) == wanted

    def poll_seconds(self) -> float:
        """How long to wait for a wake-up before claiming again.

        The configured ``poll_interval_seconds`` if set; otherwise a slow safety-net poll
        while LISTEN/NOTIFY wakes this worker (PostgreSQL), and a fast poll when nothing does.
        """
        configured = self.config.worker.poll_interval_seconds
        if configured is not None:
            return configured
        if self.notifier is not None and self.notifier.listening:
            return LISTENING_POLL_SECONDS
        return POLL_SECONDS

    async def _sleep(self, seconds: float) -> bool:
        """Wait for a wake-up, at most ``seconds``; False if none came."""
        if self.notifier is not None:
            self.notifier.set_waiting(True)
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            return False
        finally:
            if self.notifier is not None:
                self.notifier.set_waiting(False)
        return True

    def _start(self, delivery: Delivery) -> None:
        held = HeldDelivery(delivery, tr.Lease(delivery.id, delivery.lease_epoch))
        runner = DeliveryRunner(
            self._ctx,
            held,
            self.config.channels[delivery.channel],
            self.transports[delivery.channel],
        )
        held.task = asyncio.create_task(self._run_one(runner, held))
        self._held[delivery.id] = held

    async def _run_one(self, runner: DeliveryRunner, held: HeldDelivery) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            await self._give_back(held, "worker shut down mid-send")
            self.observer.released(held.delivery, "worker shut down mid-send")
            raise
        except Exception as error:  # noqa: BLE001 - one delivery must not stop the worker
            # Typically the store went away mid-run. The part in flight (if any) is resent
            # under the same GUID, or reconciled, by whoever claims the delivery next.
            attempt = error.attempt if isinstance(error, CursorWriteFailed) else None
            await self._give_back(held, f"worker error: {error}", attempt, persist=True)
            self.observer.released(held.delivery, f"worker error: {error}")
            await self.auditor.record(worker_failure(held.delivery, error, self.worker_id))
        finally:
            self.observer.run_ended(held.delivery)
            self._held.pop(held.lease.delivery_id, None)
            self._slot_free.set()
            if not runner.successor_reported:
                # Failed, expired, parked, released, lease lost, or delivered outside the
                # ack batch: whatever became claimable in its thread is found by a scan.
                self._scan_due = True
                self._wake.set()

    async def _give_back(
        self,
        held: HeldDelivery,
        reason: str,
        attempt: tr.AttemptRecord | None = None,
        *,
        persist: bool = False,
    ) -> None:
        """Best effort: release now rather than wait for the lease to lapse.

        With ``persist``, a store that is reconnecting (a restart, a killed connection) is
        retried while the lease lasts, so the delivery resumes at once and ``attempt`` (a send
        whose recording failed) still reaches the attempts table.
        """
        if held.lost:
            return
        unit = tr.release(
            held.lease,
            delay_seconds=0.0,
            refund_attempt=True,
            error=reason,
            clear_in_flight=False,  # a send may have begun: keep the mark for reconcile
            attempt=attempt,
        )
        deadline = time.monotonic() + (self.config.worker.lease_seconds if persist else 0.0)
        tries = 0
        while True:
            tries += 1
            wait = POLL_SECONDS * 2**tries
            try:
                await asyncio.shield(self.store.run(unit))
                return
            except Exception as error:  # noqa: BLE001 - best effort; the lease lapses instead
                if (
                    not isinstance(error, StoreUnavailable)
                    or held.lost
                    or time.monotonic() + wait > deadline
                ):
                    log.info(
                        "could not release delivery %s (%s); its lease will lapse",
                        held.lease.delivery_id,
                        error,
                    )
                    return
            await asyncio.sleep(wait)

    async def _drain(self) -> None:
        """Let running deliveries reach a part boundary and release; cancel stragglers."""
        tasks = [h.task for h in self._held.values() if h.task is not None]
        if not tasks:
            return
        grace = self.config.worker.shutdown_grace_seconds
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
