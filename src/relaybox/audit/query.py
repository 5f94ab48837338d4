"""Reading the failure audit: list, group, show. Read-only units for the CLI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from relaybox.errors import NotFound
from relaybox.store import Tx
from relaybox.store.base import Unit

GROUP_KEYS = ("queue", "stage", "channel", "thread", "resource", "error")


@dataclass(frozen=True, slots=True)
class JobFailure:
    """One row of ``job_failures``."""

    id: int
    queue: str
    job_id: str | None
    stage: str | None
    channel: str | None
    thread_id: str | None
    resource_id: str | None
    correlation_id: str | None
    error_type: str
    message: str
    traceback: str | None
    attempt: int | None
    terminal: bool
    worker_id: str | None
    payload: str | None
    payload_kind: str | None
    payload_size: int | None
    payload_sha256: str | None
    payload_truncated: bool
    payload_ref: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobFailure:
        return cls(
            id=int(row["id"]),
            queue=row["queue"],
            job_id=row["job_id"],
            stage=row["stage"],
            channel=row["channel"],
            thread_id=row["thread_id"],
            resource_id=row["resource_id"],
            correlation_id=row["correlation_id"],
            error_type=row["error_type"],
            message=row["message"],
            traceback=row["traceback"],
            attempt=None if row["attempt"] is None else int(row["attempt"]),
            terminal=bool(row["terminal"]),
            worker_id=row["worker_id"],
            payload=row["payload"],
            payload_kind=row["payload_kind"],
            payload_size=None if row["payload_size"] is None else int(row["payload_size"]),
            payload_sha256=row["payload_sha256"],
            payload_truncated=bool(row["payload_truncated"]),
            payload_ref=row["payload_ref"],
            created_at=float(row["created_at"]),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Which failures to look at; ``None`` means any."""

    since: float | None = None
    queue: str | None = None
    job_id: str | None = None
    stage: str | None = None
    channel: str | None = None
    thread_id: str | None = None
    resource_id: str | None = None
    correlation_id: str | None = None
    error_type: str | None = None
    terminal: bool | None = None

    def params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FailureGroup:
    key: str | None
    failures: int
    jobs: int
    first_at: float
    last_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def list_failures(where: FailureFilter, limit: int = 100) -> Unit[list[JobFailure]]:
    def unit(tx: Tx) -> list[JobFailure]:
        rows = tx.fetch_all("list_failures", {**where.params(), "limit": limit})
        return [JobFailure.from_row(r) for r in rows]

    return unit


def group_failures(where: FailureFilter, by: str, limit: int = 100) -> Unit[list[FailureGroup]]:
    """Count failures per chat, queue, stage, channel, user or error type."""
    if by not in GROUP_KEYS:
        raise ValueError(f"cannot group failures by {by!r}; one of: {', '.join(GROUP_KEYS)}")

    def unit(tx: Tx) -> list[FailureGroup]:
        rows = tx.fetch_all("group_failures", {**where.params(), "by": by, "limit": limit})
        return [
            FailureGroup(
                key=r["key"],
                failures=int(r["failures"]),
                jobs=int(r["jobs"]),
                first_at=float(r["first_at"]),
                last_at=float(r["last_at"]),
            )
            for r in rows
        ]

    return unit


def get_failure(failure_id: int) -> Unit[JobFailure]:
    def unit(tx: Tx) -> JobFailure:
        row = tx.fetch_one("failure_by_id", {"id": failure_id})
        if row is None:
            raise NotFound(f"failure {failure_id} does not exist")
        return JobFailure.from_row(row)

    return unit
