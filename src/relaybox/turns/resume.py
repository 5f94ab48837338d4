"""Resume: hand turns left behind by a dead process to a registered handler.

Platforms do not always redeliver a message whose webhook was answered (or timed out), so a
turn whose attempt died would never be answered. A resume pass finds the turns that may run
again (:func:`relaybox.turns.inspect.resumable_turns`: crashed more than
``[turns] resume_after_seconds`` past their lease, pending after an error and due, or blocked
on a step an operator has since resolved), claims each (the same guarded claim a redelivery
makes, so a redelivery and a resume never both run it) and calls the handler with the
:class:`~relaybox.Turn`, exactly as the webhook code does::

    async def handle_turn(turn: relaybox.Turn) -> None:     # myapp/bot.py
        await answer(turn)                                   # the same code the webhook runs

It runs inside ``relaybox worker`` as a supervised service when a handler is registered
(``relaybox worker --turn-handler myapp.bot:handle_turn`` or ``[turns] handler``), and once
on demand with ``relaybox resume``. The attempt limit (``[turns] max_attempts``) ends a turn
that keeps failing as ``failed``, with a ``job_failures`` row; its message stays in ``gaps``.
Every handler call has a deadline (``[turns] handler_timeout_seconds``; a hung handler is a
failed attempt) and a pass runs up to ``[turns] resume_concurrency`` turns at once.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect as pyinspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from relaybox.errors import ConfigError, TurnHandlerTimeout
from relaybox.turns.api import Turn
from relaybox.turns.inspect import resumable_turns
from relaybox.worker.service import Service

if TYPE_CHECKING:
    from relaybox.client import Relaybox

log = logging.getLogger("relaybox.turns")

TurnHandler = Callable[[Turn], Awaitable[None]]


def load_handler(spec: str) -> TurnHandler:
    """Import ``module:function`` (an ``async def handler(turn)``); one-line ConfigError."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"turn handler {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is a bad setting
        raise ConfigError(
            f"turn handler {spec!r}: cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from None
    handler = getattr(module, attr, None)
    if handler is None:
        raise ConfigError(f"turn handler {spec!r}: {module_name!r} has no {attr!r}")
    if not pyinspect.iscoroutinefunction(handler):
        raise ConfigError(f"turn handler {spec!r} must be an async function taking the turn")
    return cast(TurnHandler, handler)


@dataclass(frozen=True)
class Resumed:
    """What a resume pass did with one turn."""

    turn_id: int
    outcome: str  # the claim's outcome: retry (handler ran), in_progress, done, failed, ...
    status: str  # the turn's status afterwards
    error: str | None = None  # the handler's exception, if it raised

    def to_json(self) -> dict[str, object]:
        return {
            "turn_id": self.turn_id,
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
        }


class Resumer:
    """One resume pass at a time over the store of ``rb``.

    Each handler call is bounded by ``timeout`` (``[turns] handler_timeout_seconds``): a
    handler that hangs is cancelled and its attempt released as failed
    (:class:`~relaybox.errors.TurnHandlerTimeout`: pending again, or ``failed`` with a
    ``job_failures`` row at the attempt limit), so it never blocks the loop. Up to
    ``concurrency`` (``[turns] resume_concurrency``) turns of one pass run at once.
    """

    def __init__(
        self,
        rb: Relaybox,
        handler: TurnHandler,
        *,
        batch: int = 50,
        timeout: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        turns = rb.config.turns
        self.rb = rb
        self.handler = handler
        self.batch = batch
        self.timeout = turns.handler_timeout_seconds if timeout is None else timeout
        self.concurrency = turns.resume_concurrency if concurrency is None else concurrency
        if self.timeout <= 0 or self.concurrency < 1:
            raise ConfigError(
                f"resume needs a positive handler timeout and concurrency (got {self.timeout!r},"
                f" {self.concurrency!r})"
            )

    async def run_once(self, turn_ids: Sequence[int] | None = None) -> list[Resumed]:
        """Resume the turns that may run now (or exactly ``turn_ids``, ignoring the wait)."""
        if turn_ids is None:
            after = self.rb.config.turns.resume_after_seconds
            found = await self.rb.store.read(resumable_turns(after, limit=self.batch))
            turn_ids = [turn.id for turn in found]
        gate = asyncio.Semaphore(self.concurrency)

        async def bounded(turn_id: int) -> Resumed:
            async with gate:
                return await self._resume(turn_id)

        return list(await asyncio.gather(*(bounded(turn_id) for turn_id in turn_ids)))

    async def _resume(self, turn_id: int) -> Resumed:
        error: str | None = None
        turn: Turn | None = None
        try:
            async with self.rb.resume_turn(turn_id) as entered:
                turn = entered
                if turn.should_run:
                    log.info("turn %s: resuming attempt %s", turn_id, turn.attempt)
                    await self._call(turn)
        except Exception as raised:  # noqa: BLE001 - recorded by the turn's release, reported
            error = f"{type(raised).__name__}: {raised}"
            log.warning("turn %s: resume failed: %s", turn_id, error)
        if turn is None:
            return Resumed(turn_id, "error", "unknown", error)
        status = str(turn.record.status) if turn.record else "none"
        return Resumed(turn_id, str(turn.outcome), status, error)

    async def _call(self, turn: Turn) -> None:
        """The handler, cancelled after ``timeout``; the expiry (not a TimeoutError the
        handler raised itself) becomes :class:`TurnHandlerTimeout`, released by the turn."""
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                await self.handler(turn)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TurnHandlerTimeout(
                f"turn {turn.id} attempt {turn.attempt}: the handler did not finish within"
                f" {self.timeout:g}s ([turns] handler_timeout_seconds) and was cancelled"
            ) from None

    async def __call__(self) -> None:
        await self.run_once()


def resume_service(rb: Relaybox, handler: TurnHandler) -> Service:
    """The worker's resume loop, supervised (``worker.services.add(resume_service(...))``)."""
    resumer = Resumer(rb, handler)
    return Service(
        "turn-resume", resumer, every=rb.config.turns.resume_interval_seconds, run_first=True
    )
