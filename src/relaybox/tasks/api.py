"""The agent's side: start a task, report through its handle, or run a coroutine as one.

    >>> handle = await rb.tasks.start(                                    # doctest: +SKIP
    ...     Conversation("sms", "chat-42", "+15550100"), "Find flights to Lisbon",
    ...     contract=Contract(ack_within=5, progress_every=30, finish_within=600))
    >>> await handle.ack("On it: searching flights")                      # doctest: +SKIP
    >>> await handle.progress("Checked 3 of 5 airlines")                  # doctest: +SKIP
    >>> await handle.complete(["Found 3 flights.", "Cheapest: 212 EUR."])  # doctest: +SKIP

Every text is checked against the channel's limits *before* anything is stored, and every
call is one unit of work on the store's writer thread (awaited, never blocking the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from relaybox import jsonvalue
from relaybox.clock import SYSTEM, Clock
from relaybox.config import ChannelConfig, Config
from relaybox.errors import InvalidReply, InvalidTask, StoreUnavailable
from relaybox.outbox.enqueue import MAX_FIELD_CHARS, build_request
from relaybox.store import Store
from relaybox.tasks import inspect, transitions
from relaybox.tasks.models import CancelOutcome, Contract, Conversation, Task, TaskState
from relaybox.tasks.settings import LiveSettings
from relaybox.validation import identifier, new_correlation_id

log = logging.getLogger("relaybox.tasks")

MAX_SUMMARY_CHARS = 500
MAX_DATA_BYTES = 65_536  # journaled data of one event, as JSON
DEFAULT_FAILURE_TEXT = "Sorry, this did not work out: {summary}"

Body = Callable[["TaskHandle"], Awaitable[Sequence[str] | None]]
CancelHook = Callable[[Task], Awaitable[None] | None]


class Tasks:
    """``rb.tasks``: start, look up, list and cancel tasks."""

    def __init__(
        self, store: Store, config: Config, settings: LiveSettings, clock: Clock = SYSTEM
    ) -> None:
        self.store = store
        self.config = config
        self.settings = settings
        self.clock = clock

    # -- starting -----------------------------------------------------------------------

    async def start(
        self,
        conversation: Conversation,
        summary: str,
        *,
        contract: Contract | None = None,
        task_key: str | None = None,
        runner: str | None = None,
    ) -> TaskHandle:
        """Start a task bound to ``conversation``; the same ``task_key`` returns the stored one."""
        channel = self.config.channel(conversation.channel)
        summary = _summary(summary)
        resolved = (contract or Contract()).resolve(
            self.settings.current.contract_defaults(channel.name)
        )
        rendered = {
            name: _render(name, getattr(resolved, name), summary, channel)
            for name in ("ack_text", "nudge_text", "timeout_text", "interrupted_text")
        }
        resolved = type(resolved)(**{**resolved.__dict__, **rendered})
        request = transitions.StartRequest(
            task_key=_ident("task key", task_key or f"task-{uuid.uuid4()}"),
            channel=channel.name,
            thread_id=_ident("thread id", conversation.thread_id),
            recipient=_ident("recipient", conversation.recipient),
            resource_id=_ident("resource id", conversation.resource_id or conversation.recipient),
            correlation_id=_ident(
                "correlation id", conversation.correlation_id or new_correlation_id()
            ),
            summary=summary,
            contract=resolved,
            runner=runner,
        )
        task = await self.store.run(
            transitions.start(request, self.clock.now(), self.config.channels)
        )
        return TaskHandle(self, task.id, channel)

    def handle(self, task_id: int) -> TaskHandle:
        """A handle on a task started elsewhere (another process, an earlier run)."""
        return TaskHandle(self, task_id, None)

    async def run(
        self,
        conversation: Conversation,
        summary: str,
        body: Body,
        *,
        contract: Contract | None = None,
        task_key: str | None = None,
        failure_text: str = DEFAULT_FAILURE_TEXT,
        on_cancel: CancelHook | None = None,
    ) -> Task:
        """Run ``body(handle)`` as a task, beating liveness while it runs.

        What ``body`` returns (a list of parts) completes the task, unless the body already
        finished it through the handle; an exception fails it with ``failure_text`` (which may
        use ``{summary}``) shown to the user, and so does returning ``None`` from a body that
        did not finish the task. When the task is
        cancelled or times out meanwhile (by an operator, by the supervisor), the body is
        cancelled and ``on_cancel(task)`` runs. If this process dies, its beats stop and the
        supervisor fails the task after the contract's ``liveness`` and tells the user.
        """
        runner = f"{socket.gethostname()}:{os.getpid()}"
        channel = self.config.channel(conversation.channel)
        failure = _render("failure_text", failure_text, _summary(summary), channel)
        handle = await self.start(
            conversation, summary, contract=contract, task_key=task_key, runner=runner
        )
        task = await self.store.run(transitions.beat(handle.id, runner, self.clock.now()))
        if not task.state.open:
            return task
        every = max(0.05, task.liveness_within / 3.0)
        work = asyncio.ensure_future(body(handle))
        ended = asyncio.Event()
        work.add_done_callback(lambda _f: ended.set())
        while not work.done():
            if await self.clock.wait(ended, every):
                break
            try:
                task = await self.store.run(transitions.beat(handle.id, runner, self.clock.now()))
            except StoreUnavailable as error:
                log.warning("task %s: liveness beat failed: %s", handle.id, error)
                continue
            if not task.state.open:
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                if on_cancel is not None:
                    result = on_cancel(task)
                    if asyncio.iscoroutine(result):
                        await result
                return task
        try:
            parts = work.result()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the failure is the task's outcome
            current = await handle.refresh()
            if current.state.open:
                await handle.fail(error, user_text=failure)
            return await handle.refresh()
        current = await handle.refresh()
        if not current.state.open:
            return current
        if parts is None:
            # Nobody runs the task any more and nobody will finish it: say so now rather
            # than let the user wait for the finish deadline.
            await handle.fail(
                InvalidTask("the task body returned without a result and without finishing"),
                user_text=failure,
            )
        else:
            await handle.complete(parts)
        return await handle.refresh()

    # -- reading and operating ----------------------------------------------------------

    async def get(self, task_id: int) -> Task:
        return await self.store.read(inspect.get_task(task_id))

    async def list(
        self,
        *,
        state: TaskState | None = None,
        late: bool = False,
        thread_id: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        return await self.store.read(
            inspect.list_tasks(
                now=self.clock.now(),
                state=state,
                late=late,
                thread_id=thread_id,
                limit=limit,
                before_id=before_id,
            )
        )

    async def events(
        self, task_id: int, *, after_seq: int = 0, limit: int = 100
    ) -> inspect.EventPage:
        return await self.store.read(inspect.events(task_id, after_seq=after_seq, limit=limit))

    async def cancel(self, task_id: int, reason: str, *, actor: str = "agent") -> CancelOutcome:
        """Cancel a task and tell the user ``reason``; ``already_finished`` if it ended first."""
        task = await self.get(task_id)
        text = _user_text("reason", reason, self.config.channel(task.channel))
        return await self.store.run(
            transitions.cancel(task_id, text, actor, self.clock.now(), self.config.channels)
        )


class TaskHandle:
    """What the task body reports through. Every method is one committed unit of work."""

    def __init__(self, tasks: Tasks, task_id: int, channel: ChannelConfig | None) -> None:
        self._tasks = tasks
        self.id = task_id
        self._channel = channel

    async def _channel_of(self) -> ChannelConfig:
        if self._channel is None:
            task = await self.refresh()
            self._channel = self._tasks.config.channel(task.channel)
        return self._channel

    async def _run(self, unit: Any) -> Task:
        result: Task = await self._tasks.store.run(unit)
        return result

    def _now(self) -> float:
        return self._tasks.clock.now()

    async def refresh(self) -> Task:
        return await self._tasks.get(self.id)

    async def ack(self, text: str) -> Task:
        """Tell the user the work started; the contract's ack is met once it was surfaced."""
        text = _user_text("ack text", text, await self._channel_of())
        return await self._run(transitions.ack(self.id, text, self._now(), self._channels()))

    async def progress(
        self, text: str | None = None, *, data: dict[str, Any] | None = None
    ) -> Task:
        """A sign of life: ``text`` is shown to the user; ``data`` (a JSON object) is journaled."""
        if text is None and data is None:
            raise InvalidTask("progress needs a text to show or data to journal")
        if text is not None:
            text = _user_text("progress text", text, await self._channel_of())
        checked = _data(data)
        return await self._run(
            transitions.progress(self.id, text, checked, self._now(), self._channels())
        )

    async def tool_started(self, name: str, data: dict[str, Any] | None = None) -> Task:
        return await self._tool(name, False, data)

    async def tool_finished(self, name: str, data: dict[str, Any] | None = None) -> Task:
        return await self._tool(name, True, data)

    async def _tool(self, name: str, finished: bool, data: dict[str, Any] | None) -> Task:
        name = _ident("tool name", name)
        return await self._run(
            transitions.tool(self.id, name, finished, _data(data), self._now(), self._channels())
        )

    async def question(self, text: str) -> Task:
        """Ask the user something (shown; also a sign of life)."""
        text = _user_text("question", text, await self._channel_of())
        return await self._run(transitions.question(self.id, text, self._now(), self._channels()))

    async def complete(self, parts: Sequence[str]) -> Task:
        """Send the result; the task is ``done`` once it was surfaced."""
        channel = await self._channel_of()
        checked = _parts(parts, channel)
        return await self._run(
            transitions.complete(self.id, checked, self._now(), self._channels())
        )

    async def fail(self, error: BaseException | str, *, user_text: str) -> Task:
        """The work failed: record ``error``, tell the user ``user_text``."""
        text = _user_text("user text", user_text, await self._channel_of())
        error_type = type(error).__name__ if isinstance(error, BaseException) else "TaskFailed"
        message = str(error).strip() or error_type
        return await self._run(
            transitions.fail(self.id, error_type, message, text, self._now(), self._channels())
        )

    async def cancel(self, reason: str) -> CancelOutcome:
        return await self._tasks.cancel(self.id, reason)

    def _channels(self) -> dict[str, ChannelConfig]:
        return self._tasks.config.channels


# -- validation: one clear line, before anything is stored --------------------------------


def _summary(summary: object) -> str:
    if not isinstance(summary, str) or not summary.strip():
        raise InvalidTask("a task needs a non-empty summary")
    if len(summary) > MAX_SUMMARY_CHARS:
        raise InvalidTask(f"summary is {len(summary)} characters; the limit is {MAX_SUMMARY_CHARS}")
    if "\x00" in summary:
        raise InvalidTask("summary contains a NUL character")
    return summary


def _ident(what: str, value: object) -> str:
    return identifier(what, value, error=InvalidTask, max_chars=MAX_FIELD_CHARS)


def _render(name: str, template: str, summary: str, channel: ChannelConfig) -> str:
    try:
        text = template.format(summary=summary)
    except (KeyError, IndexError, ValueError) as error:
        raise InvalidTask(f"{name} may only use {{summary}}: {error!r}") from None
    return _user_text(name, text, channel)


def _user_text(what: str, text: object, channel: ChannelConfig) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidTask(f"{what} must be non-empty text")
    _parts([text], channel, what)
    return text


def _parts(parts: object, channel: ChannelConfig, what: str = "result") -> list[str]:
    if isinstance(parts, str | bytes) or not isinstance(parts, Sequence):
        raise InvalidTask(f"{what} must be a list of text parts")
    try:
        request = build_request(channel, thread_id="t", recipient="r", parts=list(parts))
    except InvalidReply as error:
        raise InvalidTask(f"{what}: {error}") from None
    return list(request.parts)


def _data(data: object) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InvalidTask(f"progress data must be a JSON object, not {type(data).__name__}")
    try:
        size = len(jsonvalue.dumps(data, "data").encode("utf-8"))
    except jsonvalue.NotJSON as error:
        raise InvalidTask(str(error)) from None
    if size > MAX_DATA_BYTES:
        raise InvalidTask(f"data is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}")
    return data
