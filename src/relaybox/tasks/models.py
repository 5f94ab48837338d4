"""What a task is: its states, its contract, its conversation, its journal events."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from relaybox.config import MAX_CONTRACT_SECONDS, ContractDefaults
from relaybox.errors import InvalidTask, TaskDataError


class TaskState(StrEnum):
    CREATED = "created"  # started; no acknowledgement surfaced yet
    ACKED = "acked"  # the user saw "on it"
    PROGRESSING = "progressing"  # a sign of life within the window
    LATE = "late"  # a progress window was missed; the user was nudged
    FINISHING = "finishing"  # result (or failure text) enqueued, not yet surfaced
    DONE = "done"  # the result was surfaced
    FAILED = "failed"  # the failure text was delivered, or the result could not be
    TIMED_OUT = "timed_out"  # the finish deadline passed; the user was told
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def open(self) -> bool:
        return self in OPEN


OPEN = frozenset({TaskState.CREATED, TaskState.ACKED, TaskState.PROGRESSING, TaskState.LATE})
TERMINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED})


class Outcome(StrEnum):
    """What a finishing task becomes once its message was surfaced (an enum, never text)."""

    DONE = "done"
    FAILED = "failed"


class EventKind(StrEnum):
    STARTED = "started"
    ACK_SENT = "ack_sent"  # an acknowledgement was enqueued (by the agent, or automatically)
    ACKED = "acked"  # ... and surfaced
    PROGRESS = "progress"
    TOOL_STARTED = "tool_started"
    TOOL_FINISHED = "tool_finished"
    QUESTION = "question"
    NUDGE = "nudge"
    DEADLINE_MISSED = "deadline_missed"
    RESULT_SENT = "result_sent"  # the result or failure text was enqueued
    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class CancelResult(StrEnum):
    CANCELLED = "cancelled"
    ALREADY_FINISHED = "already_finished"


@dataclass(frozen=True)
class Conversation:
    """Where the task's messages go (and whose task it is)."""

    channel: str
    thread_id: str
    recipient: str
    resource_id: str | None = None  # default: the recipient
    correlation_id: str | None = None  # default: a new one


@dataclass(frozen=True)
class Contract:
    """Deadlines and texts of one task. ``None`` fields take the channel's defaults.

    >>> Contract(ack_within=3, progress_every=20, finish_within=300)       # doctest: +SKIP
    """

    ack_within: float | None = None
    progress_every: float | None = None
    finish_within: float | None = None
    liveness: float | None = None
    ack_text: str | None = None
    nudge_text: str | None = None
    timeout_text: str | None = None
    interrupted_text: str | None = None
    hand_back: bool | None = None

    def resolve(self, defaults: ContractDefaults) -> ResolvedContract:
        """Fill the gaps from ``defaults`` and check every value (raises :class:`InvalidTask`)."""
        return ResolvedContract(
            ack_within=_seconds("ack_within", self.ack_within, defaults.ack_within_seconds),
            progress_every=_seconds(
                "progress_every", self.progress_every, defaults.progress_every_seconds
            ),
            finish_within=_seconds(
                "finish_within", self.finish_within, defaults.finish_within_seconds
            ),
            liveness=_seconds("liveness", self.liveness, defaults.liveness_seconds),
            ack_text=_text("ack_text", self.ack_text, defaults.ack_text),
            nudge_text=_text("nudge_text", self.nudge_text, defaults.nudge_text),
            timeout_text=_text("timeout_text", self.timeout_text, defaults.timeout_text),
            interrupted_text=_text(
                "interrupted_text", self.interrupted_text, defaults.interrupted_text
            ),
            hand_back=defaults.hand_back if self.hand_back is None else bool(self.hand_back),
        )


@dataclass(frozen=True)
class ResolvedContract:
    ack_within: float
    progress_every: float
    finish_within: float
    liveness: float
    ack_text: str
    nudge_text: str
    timeout_text: str
    interrupted_text: str
    hand_back: bool


def _seconds(name: str, value: float | None, default: float) -> float:
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTask(f"{name} must be a number of seconds (got {value!r})")
    if value <= 0:
        raise InvalidTask(f"{name} must be greater than 0 seconds (got {value!r})")
    if value > MAX_CONTRACT_SECONDS:
        raise InvalidTask(
            f"{name} must be at most {MAX_CONTRACT_SECONDS:g} seconds (got {value!r})"
        )
    return float(value)


def _text(name: str, value: str | None, default: str) -> str:
    text = default if value is None else value
    if not isinstance(text, str) or not text.strip():
        raise InvalidTask(f"{name} must be non-empty text")
    return text


@dataclass(frozen=True)
class Task:
    """One task row, decoded."""

    id: int
    task_key: str
    channel: str
    thread_id: str
    recipient: str
    resource_id: str
    correlation_id: str
    summary: str
    state: TaskState
    outcome: Outcome | None
    ack_within: float
    progress_every: float
    finish_within: float
    liveness_within: float
    ack_text: str
    nudge_text: str
    timeout_text: str
    interrupted_text: str
    hand_back: bool
    ack_due: float | None
    progress_due: float | None
    finish_due: float
    liveness_due: float | None
    next_due: float | None
    ack_delivery_id: int | None
    acked_at: float | None
    auto_acked: bool
    nudges: int
    result_delivery_id: int | None
    result_hash: str | None
    notice_delivery_id: int | None
    error_type: str | None
    error: str | None
    cancel_reason: str | None
    runner: str | None
    last_progress_at: float | None
    last_seq: int
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        """Decode a row; anything unexpected raises :class:`TaskDataError` (never skipped)."""
        try:
            return cls(
                id=int(row["id"]),
                task_key=str(row["task_key"]),
                channel=str(row["channel"]),
                thread_id=str(row["thread_id"]),
                recipient=str(row["recipient"]),
                resource_id=str(row["resource_id"]),
                correlation_id=str(row["correlation_id"]),
                summary=str(row["summary"]),
                state=TaskState(row["state"]),
                outcome=None if row["outcome"] is None else Outcome(row["outcome"]),
                ack_within=float(row["ack_within"]),
                progress_every=float(row["progress_every"]),
                finish_within=float(row["finish_within"]),
                liveness_within=float(row["liveness_within"]),
                ack_text=str(row["ack_text"]),
                nudge_text=str(row["nudge_text"]),
                timeout_text=str(row["timeout_text"]),
                interrupted_text=str(row["interrupted_text"]),
                hand_back=bool(row["hand_back"]),
                ack_due=_opt_float(row["ack_due"]),
                progress_due=_opt_float(row["progress_due"]),
                finish_due=float(row["finish_due"]),
                liveness_due=_opt_float(row["liveness_due"]),
                next_due=_opt_float(row["next_due"]),
                ack_delivery_id=_opt_int(row["ack_delivery_id"]),
                acked_at=_opt_float(row["acked_at"]),
                auto_acked=bool(row["auto_acked"]),
                nudges=int(row["nudges"]),
                result_delivery_id=_opt_int(row["result_delivery_id"]),
                result_hash=row["result_hash"],
                notice_delivery_id=_opt_int(row["notice_delivery_id"]),
                error_type=row["error_type"],
                error=row["error"],
                cancel_reason=row["cancel_reason"],
                runner=row["runner"],
                last_progress_at=_opt_float(row["last_progress_at"]),
                last_seq=int(row["last_seq"]),
                created_at=float(row["created_at"]),
                updated_at=float(row["updated_at"]),
                finished_at=_opt_float(row["finished_at"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise TaskDataError(
                f"task row {row.get('id')!r} cannot be decoded ({type(error).__name__}: {error})"
            ) from error

    def late(self, now: float) -> bool:
        """Open and past a deadline it has not yet been handled for, or nudged."""
        return self.state == TaskState.LATE or (
            self.state.open and self.next_due is not None and self.next_due <= now
        )

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["state"] = str(self.state)
        data["outcome"] = None if self.outcome is None else str(self.outcome)
        return data


@dataclass(frozen=True)
class TaskEvent:
    """One journal entry: ``seq`` is the task's own order (1, 2, 3, ... without gaps)."""

    task_id: int
    seq: int
    at: float
    kind: EventKind
    actor: str
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskEvent:
        raw = row.get("payload")
        try:
            payload = json.loads(raw) if isinstance(raw, str | bytes) else raw
            if not isinstance(payload, dict):
                raise ValueError(f"payload is {type(payload).__name__}, not a JSON object")
            return cls(
                int(row["task_id"]),
                int(row["seq"]),
                float(row["at"]),
                EventKind(row["kind"]),
                str(row["actor"]),
                payload,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise TaskDataError(
                f"event {row.get('seq')!r} of task {row.get('task_id')!r} cannot be decoded"
                f" ({type(error).__name__}: {error})"
            ) from error

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "seq": self.seq,
            "at": self.at,
            "kind": str(self.kind),
            "actor": self.actor,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel did: ``cancelled``, or ``already_finished`` (then ``task`` says how)."""

    result: CancelResult
    task: Task


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
