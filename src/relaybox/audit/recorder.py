"""Recording failures: into ``job_failures``, or — when the store cannot take them — the log.

Recording a failure must never raise and never take a worker down: the failure being recorded
is usually not the caller's only problem (the store itself may be what broke). So every path
here ends either in a stored row or in one structured log line (JSON) that carries the whole
record, for a log shipper to keep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Callable
from typing import Any

from relaybox.audit.record import FailureReport, message_of, to_row
from relaybox.config import AuditConfig
from relaybox.store import Store, Tx
from relaybox.store.base import Unit

log = logging.getLogger("relaybox.audit")


def insert_failure(row: dict[str, Any]) -> Unit[int]:
    """Unit: store one failure row; returns its id."""

    def unit(tx: Tx) -> int:
        stored = tx.fetch_one("insert_failure", row)
        assert stored is not None  # INSERT ... RETURNING always answers
        return int(stored["id"])

    return unit


def insert_failure_within(tx: Tx, row: dict[str, Any]) -> int | None:
    """Store ``row`` inside the caller's unit of work, next to the change it explains.

    The insert runs in a savepoint of its own: if the audit table refuses the row (dropped by
    a botched manual migration, say), only the insert is undone, the row goes to the log, and
    the caller's state change still commits, because recording a failure must never stop the
    work. A lost connection still fails the whole unit (the rollback raises).
    """
    tx.execute_script("SAVEPOINT relaybox_audit_row")
    try:
        stored = tx.fetch_one("insert_failure", row)
    except Exception as error:  # noqa: BLE001 - undone below and logged whole
        tx.execute_script("ROLLBACK TO SAVEPOINT relaybox_audit_row")
        tx.execute_script("RELEASE SAVEPOINT relaybox_audit_row")
        log_unrecorded(row, f"{type(error).__name__}: {message_of(error)}")
        return None
    tx.execute_script("RELEASE SAVEPOINT relaybox_audit_row")
    assert stored is not None  # INSERT ... RETURNING always answers
    return int(stored["id"])


class FailureAuditor:
    """Records failures for one store; used by the worker and by :func:`record_job_failure`."""

    def __init__(
        self,
        store: Store,
        config: AuditConfig | None = None,
        *,
        on_fallback: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config or AuditConfig()
        self.on_fallback = on_fallback  # a worker counts fallbacks (relaybox_audit_fallbacks)

    def _unrecorded(self, row: dict[str, Any], reason: str, *, maybe_stored: bool = False) -> None:
        log_unrecorded(row, reason, maybe_stored=maybe_stored)
        if self.on_fallback is not None:
            self.on_fallback()

    async def record(self, report: FailureReport) -> int | None:
        """Store ``report``; return its id, or None if it went to the log instead."""
        row = self._row(report)
        future: concurrent.futures.Future[int] | None = None
        try:
            future = self.store.submit(insert_failure(row))
            return await asyncio.wait_for(
                asyncio.wrap_future(future), self.config.record_timeout_seconds
            )
        except asyncio.CancelledError:
            self._unrecorded(row, "cancelled while recording", maybe_stored=_maybe_stored(future))
            raise
        except TimeoutError:
            self._unrecorded(row, _timeout_reason(self.config), maybe_stored=_maybe_stored(future))
        except Exception as error:  # noqa: BLE001 - recording a failure must never raise
            self._unrecorded(row, f"{type(error).__name__}: {message_of(error)}")
        return None

    def record_sync(self, report: FailureReport) -> int | None:
        """Blocking variant for synchronous code (not from inside a unit of work)."""
        row = self._row(report)
        future: concurrent.futures.Future[int] | None = None
        try:
            future = self.store.submit(insert_failure(row))
            return future.result(timeout=self.config.record_timeout_seconds)
        except concurrent.futures.TimeoutError:
            self._unrecorded(row, _timeout_reason(self.config), maybe_stored=_maybe_stored(future))
        except Exception as error:  # noqa: BLE001 - recording a failure must never raise
            self._unrecorded(row, f"{type(error).__name__}: {message_of(error)}")
        return None

    def row(self, report: FailureReport) -> dict[str, Any]:
        """The ``job_failures`` row for ``report`` (never raises).

        For a unit that stores the row together with the state change it explains (the
        worker's give-up, release and expiry: see ``outbox/transitions.py``); if that unit
        fails, pass the row to :func:`log_unrecorded`.
        """
        return self._row(report)

    def _row(self, report: FailureReport) -> dict[str, Any]:
        try:
            return to_row(report, self.config.max_payload_bytes)
        except Exception as error:  # noqa: BLE001 - a report we cannot encode is still logged
            log.warning("failure report could not be encoded fully: %s", error)
            return {
                "queue": str(report.queue),
                "error_type": type(report.error).__name__,
                "message": message_of(report.error),
                "created_at": report.at,
                "encoding_error": repr(error),
            }


def log_unrecorded(row: dict[str, Any], reason: str, *, maybe_stored: bool = False) -> None:
    """One JSON log line with the whole failure record: the audit log of last resort."""
    line = {
        "event": "job_failure_not_stored",
        "reason": reason,
        "maybe_stored": maybe_stored,
        "failure": row,
    }
    log.error("%s", json.dumps(line, ensure_ascii=False, default=str, sort_keys=True))


def _maybe_stored(future: concurrent.futures.Future[int] | None) -> bool:
    """Withdraw a unit we stopped waiting for; True if it had already started (may commit)."""
    if future is None:
        return False
    return not (future.cancel() or future.cancelled())


def _timeout_reason(config: AuditConfig) -> str:
    return f"store did not answer within {config.record_timeout_seconds:g}s"
