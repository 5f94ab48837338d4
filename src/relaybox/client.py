"""The agent-facing API: open a store, enqueue replies, look at them, cancel them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from relaybox import inbound as _inbound
from relaybox import trace as _trace
from relaybox.audit import FailureAuditor, FailureFilter, FailureReport, JobFailure
from relaybox.audit.query import list_failures
from relaybox.config import Config, load_config
from relaybox.errors import InvalidReply, UnknownChannel
from relaybox.inbound import InboundMessage, InboundResult
from relaybox.memory import MemoryAdmin, Scope, ScopedMemory
from relaybox.models import Attempt, Delivery, Status
from relaybox.observability import tracing
from relaybox.outbox import inspect, transitions
from relaybox.outbox.enqueue import (
    EnqueueManyUnit,
    EnqueueResult,
    EnqueueUnit,
    ReplyRequest,
    build_request,
)
from relaybox.steps import Intent, StepPolicy, StepResult, StepRunner, ToolStep
from relaybox.steps.runner import Body, IfRunning
from relaybox.steps.tool import ToolFn, tool_step
from relaybox.store import DEFAULT_URL, Store, open_store
from relaybox.tasks.api import Tasks
from relaybox.tasks.settings import LiveSettings
from relaybox.turns import transitions as turn_transitions
from relaybox.turns.api import TurnScope
from relaybox.turns.api import settings_for as turn_settings

# The keyword arguments of Relaybox.enqueue, which each item of enqueue_many may carry.
_ENQUEUE_FIELDS = frozenset(
    {"channel", "thread_id", "recipient", "parts", "resource_id", "reply_key", "correlation_id",
     "supersede"}
)  # fmt: skip


class Relaybox:
    """One handle on a relaybox store, for agent code (asyncio).

    >>> rb = relaybox.open("sqlite:///relaybox.db")                      # doctest: +SKIP
    >>> result = await rb.enqueue(                                       # doctest: +SKIP
    ...     channel="sms", thread_id="chat-42", recipient="+15550100",
    ...     parts=["Found 3 flights.", "Cheapest: 212 EUR.", "Book it?"],
    ...     reply_key="inbound-9f2c:reply")
    >>> result.delivery.parts[0].guid                                    # doctest: +SKIP
    'c6f0...'
    """

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._auditor = FailureAuditor(store, config.audit)
        self._steps = StepRunner(store, config)
        self.task_settings = LiveSettings(config)
        self.tasks = Tasks(store, config, self.task_settings)
        """Agent task contracts: ``rb.tasks.start(...)``, ``rb.tasks.run(...)`` (docs/tasks.md)."""

    async def enqueue(
        self,
        *,
        channel: str,
        thread_id: str,
        recipient: str,
        parts: Sequence[str | bytes],
        resource_id: str | None = None,
        reply_key: str | None = None,
        correlation_id: str | None = None,
        supersede: bool = False,
    ) -> EnqueueResult:
        """Store a reply of ``parts`` in one transaction; every part gets its GUID now.

        The same ``reply_key`` enqueued again returns the stored delivery (``created`` is
        False). ``supersede=True`` cancels this thread's queued replies that have not started.
        """
        with tracing.enqueue_span(channel, thread_id, len(parts), correlation_id) as span:
            request = build_request(
                self.config.channel(channel),
                thread_id=thread_id,
                recipient=recipient,
                parts=parts,
                resource_id=resource_id,
                reply_key=reply_key,
                correlation_id=correlation_id,
                supersede=supersede,
            )
            result = await self.store.run(EnqueueUnit(request))
            d = result.delivery
            tracing.annotate_enqueue(span, d.id, [p.guid for p in d.parts], result.created)
        return result

    async def enqueue_many(self, replies: Iterable[Mapping[str, Any]]) -> list[EnqueueResult]:
        """Store many replies in one transaction: a broadcast, a backfill, an import.

        Each item takes the keyword arguments of :meth:`enqueue` (``channel``, ``thread_id``,
        ``recipient``, ``parts``, and optionally ``resource_id``, ``reply_key``,
        ``correlation_id``, ``supersede``). Results come back in the same order, each what
        :meth:`enqueue` would have returned for that reply at that point of the list (a reply
        key seen before returns its delivery with ``created`` False). All or nothing: every
        reply is validated before anything is written, and a bad reply or a reply key reused
        for other content raises (naming the reply's position) with nothing stored. On
        PostgreSQL the batch is two statements whatever its size; keep batches to a few
        thousand replies so one transaction does not hold its locks for long.

        >>> results = await rb.enqueue_many([                                # doctest: +SKIP
        ...     {"channel": "sms", "thread_id": f"chat-{n}", "recipient": phone,
        ...      "parts": ["Your flight is delayed."], "reply_key": f"delay-{n}"}
        ...     for n, phone in enumerate(phones)])
        """
        requests = tuple(
            self._request_of(position, spec) for position, spec in enumerate(replies, 1)
        )
        return await self.store.run(EnqueueManyUnit(requests))

    def _request_of(self, position: int, spec: Mapping[str, Any]) -> ReplyRequest:
        if not isinstance(spec, Mapping):
            raise InvalidReply(f"reply {position}: expected a mapping of enqueue arguments")
        unknown = set(spec) - _ENQUEUE_FIELDS
        missing = {"channel", "thread_id", "recipient", "parts"} - set(spec)
        if unknown or missing:
            problem = (
                f"unknown field(s) {', '.join(sorted(unknown))}"
                if unknown
                else f"missing {', '.join(sorted(missing))}"
            )
            raise InvalidReply(f"reply {position}: {problem}")
        fields = dict(spec)
        try:
            channel = self.config.channel(fields.pop("channel"))
            return build_request(channel, **fields)
        except (InvalidReply, UnknownChannel) as error:
            raise type(error)(f"reply {position}: {error}") from None

    async def delivery(self, delivery_id: int) -> Delivery:
        return await self.store.read(inspect.get_delivery(delivery_id))

    async def deliveries(
        self, *, status: Status | None = None, thread_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        return await self.store.read(
            inspect.list_deliveries(status=status, thread_id=thread_id, limit=limit)
        )

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        return await self.store.read(inspect.attempts_of(delivery_id))

    async def cancel(self, delivery_id: int, reason: str = "cancelled") -> Delivery:
        """Cancel a queued delivery (or stop a sending one at its next part boundary)."""
        return await self.store.run(transitions.cancel(delivery_id, reason))

    # -- inbound messages and correlation (C4) ------------------------------------------

    async def record_inbound(
        self,
        *,
        channel: str,
        external_id: str,
        thread_id: str,
        resource_id: str,
        text: str | bytes | None = None,
        meta: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        reply: Sequence[str | bytes] | None = None,
        reply_key: str | None = None,
    ) -> InboundResult:
        """Record a message the agent received, once per platform message id.

        ``result.duplicate`` is True if this ``(channel, external_id)`` was recorded before
        (a retried webhook, a replay after a restart). A duplicate is *not* necessarily
        answered: ``result.unanswered`` is True while no reply was enqueued (the first attempt
        may still be running, or may have crashed). To tell those apart, and to never run the
        agent twice at once, use :meth:`turn` instead. Everything the message causes should
        carry ``result.correlation_id``. With ``reply`` (parts), the reply is enqueued to
        ``resource_id`` in ``thread_id`` in the same transaction.

        >>> got = await rb.record_inbound(channel="sms", external_id="SM81",   # doctest: +SKIP
        ...     thread_id="chat-42", resource_id="+15550100", text="flights to Oslo?")
        >>> if not got.duplicate or got.unanswered:                            # doctest: +SKIP
        ...     await rb.reply(got.inbound.id, ["Found 3 flights.", "Book one?"])
        """
        request = _inbound.build_inbound(
            channel=channel,
            external_id=external_id,
            thread_id=thread_id,
            resource_id=resource_id,
            text=text,
            meta=meta,
            correlation_id=correlation_id,
        )
        reply_request = None
        if reply is not None:
            reply_request = build_request(
                self.config.channel(channel),
                thread_id=thread_id,
                recipient=resource_id,
                parts=reply,
                reply_key=reply_key,
            )
        unit = _inbound.RecordInbound(request, reply_request, reply_key is not None)
        return await self.store.run(unit)

    async def reply(
        self,
        inbound_id: int,
        parts: Sequence[str | bytes],
        *,
        recipient: str | None = None,
        channel: str | None = None,
        thread_id: str | None = None,
        resource_id: str | None = None,
        reply_key: str | None = None,
        supersede: bool = False,
    ) -> EnqueueResult:
        """Enqueue the reply to an inbound message and mark it answered, in one transaction.

        Defaults: the message's channel and thread, sent to its ``resource_id``. The reply
        carries the message's correlation id. Without ``reply_key``, a second call for the same
        message returns the stored reply (``created`` False) instead of sending it twice.
        """
        message = await self.inbound(inbound_id)
        name = channel or message.channel
        with tracing.enqueue_span(
            name, thread_id or message.thread_id, len(parts), message.correlation_id
        ) as span:
            request = build_request(
                self.config.channel(name),
                thread_id=thread_id or message.thread_id,
                recipient=recipient or message.resource_id,
                parts=parts,
                resource_id=resource_id or message.resource_id,
                reply_key=reply_key,
                supersede=supersede,
            )
            _message, result = await self.store.run(
                _inbound.ReplyToInbound(inbound_id, request, reply_key is not None)
            )
            d = result.delivery
            tracing.annotate_enqueue(span, d.id, [p.guid for p in d.parts], result.created)
        return result

    async def mark_no_reply_needed(
        self, inbound_id: int, reason: str | None = None
    ) -> InboundMessage:
        """The message was handled and needs no reply: it is then never reported as a gap."""
        return await self.store.run(_inbound.mark_no_reply_needed(inbound_id, reason))

    async def inbound(self, inbound_id: int) -> InboundMessage:
        """One inbound message, with what became of it (``state``)."""
        return await self.store.read(_inbound.get_inbound(inbound_id))

    async def gaps(self, older_than_seconds: float = 300.0) -> list[InboundMessage]:
        """Inbound messages unanswered for longer than ``older_than_seconds`` (silent loss)."""
        return await self.store.read(_inbound.find_gaps(older_than_seconds))

    async def trace(self, ref: str | int) -> _trace.Trace:
        """Everything that happened for an inbound id, delivery id or correlation id."""
        return await self.store.read(_trace.trace(str(ref)))

    # -- failure audit (C3) ------------------------------------------------------------

    async def record_failure(
        self,
        queue: str,
        error: BaseException | str,
        *,
        job_id: str | int | None = None,
        payload: Any = None,
        stage: str | None = None,
        channel: str | None = None,
        thread_id: str | None = None,
        resource_id: str | None = None,
        correlation_id: str | None = None,
        attempt: int | None = None,
        terminal: bool = True,
        payload_ref: str | None = None,
        error_type: str | None = None,
    ) -> int | None:
        """Record a failed job (agent run, tool step, your own code). Never raises.

        Returns the failure id, or None if the store could not take it: then one JSON log
        line on the ``relaybox.audit`` logger carries the whole record.
        """
        report = FailureReport(
            queue=queue,
            error=error,
            job_id=job_id,
            payload=payload,
            stage=stage,
            channel=channel,
            thread_id=thread_id,
            resource_id=resource_id,
            correlation_id=correlation_id,
            attempt=attempt,
            terminal=terminal,
            payload_ref=payload_ref,
            error_type=error_type,
            at=time.time(),
        )
        return await self._auditor.record(report)

    async def failures(
        self, where: FailureFilter | None = None, *, limit: int = 100
    ) -> list[JobFailure]:
        """Recorded failures, newest first (see :class:`relaybox.audit.FailureFilter`)."""
        return await self.store.read(list_failures(where or FailureFilter(), limit))

    async def step(
        self,
        step_id: str,
        intent: Intent,
        body: Body,
        *,
        resource_id: str,
        correlation_id: str | None = None,
        retry_safe: bool = False,
        retryable: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        if_running: IfRunning = "wait",
        wait_timeout: float | None = None,
        new_step: bool = False,
        not_outcomes: tuple[type[BaseException], ...] = (),
    ) -> StepResult:
        """Run a tool step's side effect once for (``resource_id``, ``step_id``, ``intent``).

        A repeat returns the stored outcome without calling ``body``; see docs/steps.md.

        >>> async def charge(step):                                       # doctest: +SKIP
        ...     return await psp.charge(1200, "EUR", idempotency_key=step.key)
        >>> done = await rb.step("inbound-9f2c:charge",                   # doctest: +SKIP
        ...     Intent("charge_card", {"amount": 1200, "currency": "EUR"}),
        ...     charge, resource_id="+15550100", correlation_id=inbound.correlation_id)
        """
        policy = StepPolicy(
            retry_safe=retry_safe,
            retryable=retryable,
            timeout=timeout,
            if_running=if_running,
            wait_timeout=wait_timeout,
            not_outcomes=not_outcomes,
        )
        return await self._steps.run(
            step_id,
            intent,
            body,
            resource_id=resource_id,
            correlation_id=correlation_id,
            policy=policy,
            new_step=new_step,
        )

    def tool_step(
        self,
        tool: str | None = None,
        *,
        model: str | None = None,
        sampling: dict[str, Any] | None = None,
        retry_safe: bool = False,
        retryable: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        if_running: IfRunning = "wait",
        wait_timeout: float | None = None,
        not_outcomes: tuple[type[BaseException], ...] = (),
    ) -> Callable[[ToolFn], ToolStep]:
        """Decorator: an async tool becomes an idempotent step and stays a framework tool.

        Call it as ``await fn(step_id=..., resource_id=..., **args)``, or hand it to a
        framework through ``relaybox.integrations`` (the step is then named from the turn, the
        model request and the call's position). Its intent is built from the arguments; its
        signature, name and docstring are the function's own (a leading ``step: StepContext``
        parameter is hidden; tools without one use ``relaybox.current_step()``).
        """
        policy = StepPolicy(
            retry_safe=retry_safe,
            retryable=retryable,
            timeout=timeout,
            if_running=if_running,
            wait_timeout=wait_timeout,
            not_outcomes=not_outcomes,
        )
        return tool_step(self._steps, tool, model=model, sampling=sampling, policy=policy)

    # -- agent turns -------------------------------------------------------------------

    def turn(
        self,
        *,
        channel: str,
        external_id: str,
        thread_id: str,
        resource_id: str,
        text: str | bytes | None = None,
        meta: dict[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> TurnScope:
        """Record an inbound message and open its turn: ``async with rb.turn(...) as turn``.

        ``turn.outcome`` says what this delivery does: ``new`` / ``retry`` (run the agent:
        ``turn.should_run``), ``in_progress`` (another attempt runs it now), ``done``
        (answered before), ``blocked`` (a step waits for an operator) or ``failed``. Inside:
        ``turn.memory`` / ``turn.history`` (scoped to the sender and thread), and
        ``await turn.reply(parts, history=[...])``, which enqueues the reply, stores the history
        entries and marks the message answered in one transaction. See docs/turns.md.
        """
        request = _inbound.build_inbound(
            channel=channel,
            external_id=external_id,
            thread_id=thread_id,
            resource_id=resource_id,
            text=text,
            meta=meta,
            correlation_id=correlation_id,
        )
        self.config.channel(channel)  # an unknown channel is refused before anything is stored
        settings = turn_settings(self)
        return TurnScope(self, turn_transitions.begin(request, settings), settings)

    def resume_turn(self, turn_id: int, *, source: str = "resume") -> TurnScope:
        """Claim a turn by id for another attempt (what the resume service does):
        ``async with rb.resume_turn(7) as turn: if turn.should_run: ...``."""
        settings = turn_settings(self)
        return TurnScope(self, turn_transitions.claim(turn_id, settings, source=source), settings)

    def memory(self, scope: Scope) -> ScopedMemory:
        """One person's memory in one thread: ``rb.memory(Scope(sender, f"chat-{chat_id}"))``."""
        return ScopedMemory(self.store, scope, self.config.memory)

    def memory_admin(self) -> MemoryAdmin:
        """The operator's cross-person view of memory (not for agent code)."""
        return MemoryAdmin(self.store)

    def close(self) -> None:
        self.store.close()

    async def __aenter__(self) -> Relaybox:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open(  # relaybox.open() reads naturally, like sqlite3.connect()
    url: str | None = None, *, config: Config | str | None = None
) -> Relaybox:
    """Open a relaybox store. ``url`` defaults to the config's ``[store] url``, then
    ``$RELAYBOX_DB``, then ``sqlite:///relaybox.db``; ``config`` is a :class:`Config` or a
    path to relaybox.toml (default: ``./relaybox.toml`` if present)."""
    import os

    loaded = config if isinstance(config, Config) else load_config(config)
    chosen = url or os.environ.get("RELAYBOX_DB") or loaded.store_url or DEFAULT_URL
    return Relaybox(open_store(chosen), loaded)
