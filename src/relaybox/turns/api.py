"""The turn API: one ``async with`` per inbound message, the agent's turn as one durable unit.

>>> async with rb.turn(channel="sms", external_id="SM81", thread_id="chat-42",   # doctest: +SKIP
...                    resource_id="+15550100", text="book a table for two") as turn:
...     if not turn.should_run:
...         return  # answered before, running elsewhere, blocked or failed: nothing to do now
...     await turn.history.append("user", turn.inbound.text)
...     ...  # think, call tools as steps (rb.step(f"{turn.key}:book", ...))
...     await turn.reply(["Booked for 19:30."], history=[("assistant", "Booked for 19:30.")])

Entering records the message (once) and claims its turn; the body runs only when
``turn.should_run`` (``outcome`` is ``new`` or ``retry``). While it runs, the turn's lease is
renewed in the background. Leaving the block ends the attempt: after ``turn.reply`` or
``turn.no_reply`` nothing more happens; a body that returns without either ends the turn
(``ended``, unless a reply was enqueued another way); a body that raises releases it for a
later attempt (``pending``; ``blocked`` on :class:`~relaybox.StepNeedsReconciliation`;
``failed`` when out of attempts), and the exception propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from relaybox.errors import InvalidState, TurnLeaseLost
from relaybox.inbound import InboundMessage
from relaybox.memory import Scope, ScopedMemory, TurnFence
from relaybox.memory.history import Entry, History
from relaybox.outbox.enqueue import EnqueueResult, build_request
from relaybox.steps.errors import StepNeedsReconciliation
from relaybox.store.base import Unit
from relaybox.turns import transitions as t
from relaybox.turns.records import TurnRecord

if TYPE_CHECKING:
    from relaybox.client import Relaybox

log = logging.getLogger("relaybox.turns")


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Turn:
    """One attempt at one inbound message's turn (what ``async with rb.turn(...)`` gives)."""

    def __init__(self, rb: Relaybox, begun: t.Begun, settings: t.Settings) -> None:
        self.relaybox = rb
        self.outcome = begun.outcome
        self.inbound: InboundMessage = begun.inbound
        self.record: TurnRecord | None = begun.turn
        self._settings = settings
        self._finished = False
        fence = None
        if begun.outcome.should_run and begun.turn is not None:
            fence = TurnFence(begun.turn.id, begun.turn.lease_epoch)
        self._fence = fence
        scope = Scope(self.inbound.resource_id, self.inbound.thread_id)
        self.memory = ScopedMemory(rb.store, scope, rb.config.memory, turn=fence)

    @property
    def should_run(self) -> bool:
        """True when this delivery should run the agent (``new`` or ``retry``)."""
        return self.outcome.should_run

    @property
    def history(self) -> History:
        """The person's history in this thread; appends are tagged with this attempt."""
        return self.memory.history

    @property
    def id(self) -> int:
        return self._require_record().id

    @property
    def key(self) -> str:
        """``turn-<id>``: a prefix for this turn's step ids (``f"{turn.key}:book"``)."""
        return f"turn-{self.id}"

    @property
    def attempt(self) -> int:
        return self._require_record().attempts

    @property
    def correlation_id(self) -> str:
        return self.inbound.correlation_id

    @property
    def resource_id(self) -> str:
        return self.inbound.resource_id

    @property
    def thread_id(self) -> str:
        return self.inbound.thread_id

    async def reply(
        self,
        parts: Sequence[str | bytes],
        *,
        history: Iterable[Entry] = (),
        reply_key: str | None = None,
        supersede: bool = False,
        recipient: str | None = None,
    ) -> EnqueueResult:
        """Enqueue the reply, store ``history`` entries and mark the message answered, all in
        one transaction, and end the turn. Raises :class:`~relaybox.TurnLeaseLost` (nothing
        stored) if another attempt took the turn over meanwhile.

        The reply goes to the message's ``resource_id`` unless ``recipient`` names another
        address: a group chat's turn can keep memory per person (``resource_id`` = the
        sender) and still answer in the chat. The delivery keeps the turn's ``resource_id``,
        so failures and traces stay grouped by the person."""
        lease = self._lease()
        message = self.inbound
        request = build_request(
            self.relaybox.config.channel(message.channel),
            thread_id=message.thread_id,
            recipient=message.resource_id if recipient is None else recipient,
            parts=parts,
            resource_id=message.resource_id,
            reply_key=reply_key,
            correlation_id=message.correlation_id,
            supersede=supersede,
        )
        entries = [self.history.entry_params(*entry) for entry in history]
        unit = t.answer(lease, request, entries, reply_key=reply_key, worker=self._settings.owner)
        record, result = await self.relaybox.store.run(unit)
        self._done(record)
        return result

    async def no_reply(self, reason: str | None = None, *, history: Iterable[Entry] = ()) -> None:
        """End the turn without a reply (the message is never reported as a gap)."""
        lease = self._lease()
        entries = [self.history.entry_params(*entry) for entry in history]
        unit = t.no_reply(lease, reason, entries, worker=self._settings.owner)
        self._done(await self.relaybox.store.run(unit))

    # -- internals --------------------------------------------------------------------

    def _require_record(self) -> TurnRecord:
        if self.record is None:
            raise InvalidState(
                f"inbound message {self.inbound.id} was answered before it had a turn"
            )
        return self.record

    def _lease(self) -> t.Lease:
        if self._fence is None:
            raise InvalidState(
                f"this delivery does not run the turn (outcome {self.outcome}); check"
                " turn.should_run before running the agent"
            )
        if self._finished:
            raise InvalidState(f"turn {self.id} is already {self._require_record().status}")
        return t.Lease(self._fence.turn_id, self._fence.epoch)

    def _done(self, record: TurnRecord) -> None:
        self.record = record
        self._finished = True


class TurnScope:
    """The async context manager behind ``rb.turn(...)`` and the resume service."""

    def __init__(self, rb: Relaybox, opener: Unit[t.Begun], settings: t.Settings) -> None:
        self._rb = rb
        self._opener = opener
        self._settings = settings
        self._turn: Turn | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Turn:
        begun = await self._rb.store.run(self._opener)
        self._turn = Turn(self._rb, begun, self._settings)
        if self._turn.should_run:
            self._keeper = asyncio.create_task(self._keep_lease(self._turn._lease()))
        return self._turn

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        turn = self._turn
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if turn is None or not turn.should_run or turn._finished:
            return
        lease = turn._lease()
        owner = self._settings.owner
        if error is None:
            try:
                turn._done(await self._rb.store.run(t.end(lease, worker=owner)))
            except TurnLeaseLost as lost:  # another attempt owns the turn now: its outcome
                log.warning("turn %s: %s", lease.turn_id, lost)
            return
        blocked = error.step_id if isinstance(error, StepNeedsReconciliation) else None
        unit = t.release(
            lease,
            error_type=type(error).__name__,
            error_message=(str(error) or type(error).__name__)[:2000],
            retry_delay=0.0 if not isinstance(error, Exception) else self._retry_delay(),
            blocked_step=blocked,
            settings=self._settings,
        )
        if isinstance(error, Exception):
            released = await self._rb.store.run(unit)
        else:
            # Cancelled or interrupted: do not await in a dying task; the store's writer
            # thread commits the release, so the turn can run again at once.
            self._rb.store.submit(unit)
            released = None
        if released is not None:
            turn._done(released)

    def _retry_delay(self) -> float:
        return self._rb.config.turns.retry_delay_seconds

    async def _keep_lease(self, lease: t.Lease) -> None:
        seconds = self._settings.lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            try:
                kept = await self._rb.store.run(t.renew(lease, seconds))
            except Exception as error:  # noqa: BLE001 - a missed renewal is retried next tick
                log.warning("turn %s: lease renewal failed: %s", lease.turn_id, error)
                continue
            if not kept:
                log.warning(
                    "turn %s: lease lost (another attempt took the turn over)", lease.turn_id
                )
                return


def settings_for(rb: Relaybox, owner: str | None = None) -> t.Settings:
    turns = rb.config.turns
    return t.Settings(
        owner=owner or new_owner(),
        lease_seconds=turns.lease_seconds,
        max_attempts=turns.max_attempts,
        max_payload_bytes=rb.config.audit.max_payload_bytes,
    )
