"""Structured logs: one line per worker decision, as text or JSON lines.

Every delivery line carries the same fields, so an operator can grep (or a log shipper can
index) one delivery, thread, channel, correlation id or worker: ``delivery_id``,
``part_index`` (0-based, as stored), ``parts``, ``thread``, ``channel``, ``correlation_id``,
``worker``; plus what the decision was about (``outcome``, ``latency_ms``, ``delay_s``,
``until``, ``reason``, ``attempt``). Levels: give-ups, parks, expiries, pauses and lease losses
are WARNING; retries, releases and start/stop are INFO; every claim and every acknowledged part
is DEBUG (``relaybox worker -v``). Nothing is formatted for a level that is off.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from relaybox.errors import ConfigError
from relaybox.models import Delivery, Part
from relaybox.observability.events import Listener

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("relaybox.worker")

_RB_EVENT = "rb_event"
_RB_FIELDS = "rb_fields"


def _iso(created: float) -> str:
    whole = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", whole) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event``, ``message``, fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, _RB_EVENT, None),
            "message": record.getMessage(),
        }
        fields = getattr(record, _RB_FIELDS, None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <message>  key=value ...``: for people, still one grep-able line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = f"{_iso(record.created)} {record.levelname:<7} {message}"
        fields = getattr(record, _RB_FIELDS, None)
        if fields:
            # A reason already spelled out in the message is not repeated (JSON keeps both).
            shown = {k: v for k, v in fields.items() if not (k == "reason" and str(v) in message)}
            line += "  " + " ".join(f"{k}={_text_value(v)}" for k, v in shown.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one it was made
    with: in-process runs of the CLI (tests, embedding) swap sys.stderr and close the old one,
    and a handler holding the closed stream turned every later log line into a
    "--- Logging error ---" report in someone else's output."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """The stream is always the current sys.stderr."""


def configure_logging(log_format: str, level: str, *, stream: Any = None) -> None:
    """Send relaybox's logs to stderr as ``text`` or ``json`` at ``level``.

    Raises :class:`ConfigError` (a one-line CLI error) for an unknown format or level.
    """
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"unknown log format {log_format!r}; choose one of: {', '.join(LOG_FORMATS)}"
        )
    if level not in LOG_LEVELS:
        raise ConfigError(f"unknown log level {level!r}; choose one of: {', '.join(LOG_LEVELS)}")
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # One line per HTTP request says nothing about deliveries; our own lines do.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class LogListener(Listener):
    """Writes one line per decision to the ``relaybox.worker`` logger."""

    def __init__(self, worker_id: str, logger: logging.Logger | None = None) -> None:
        self.worker_id = worker_id
        self.log = logger or log

    def _emit(
        self,
        level: int,
        event: str,
        message: str,
        d: Delivery | None,
        part: Part | None,
        **extra: Any,
    ) -> None:
        fields: dict[str, Any] = {}
        if d is not None:
            fields["delivery_id"] = d.id
            if part is not None:
                fields["part_index"] = part.index
            fields["parts"] = d.part_count
            fields["thread"] = d.thread_id
            fields["channel"] = d.channel
            fields["correlation_id"] = d.correlation_id
            fields["attempt"] = d.attempts
        fields["worker"] = self.worker_id
        fields.update(extra)
        self.log.log(level, message, extra={_RB_EVENT: event, _RB_FIELDS: fields})

    # -- lifecycle ---------------------------------------------------------------------

    def worker_started(self, worker_id: str, channels: list[str], concurrency: int) -> None:
        if self.log.isEnabledFor(logging.INFO):
            self._emit(
                logging.INFO,
                "worker_started",
                f"worker started on {', '.join(channels)} (concurrency {concurrency})",
                None,
                None,
                channels=",".join(channels),
            )

    def worker_stopping(self, in_flight: int, grace_seconds: float, signal_name: str) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            what = (
                f"waiting for {in_flight} delivery(ies) in flight to finish their current part"
                f" (up to {grace_seconds:g}s), then releasing the rest"
                if in_flight
                else "nothing in flight"
            )
            again = "; Ctrl-C again to stop at once" if signal_name == "SIGINT" else ""
            self._emit(
                logging.WARNING,
                "worker_stopping",
                f"stopping ({signal_name}): no new claims; {what}{again}",
                None,
                None,
                in_flight=in_flight,
            )

    def worker_stopping_now(self, in_flight: int) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            self._emit(
                logging.WARNING,
                "worker_stopping_now",
                f"stopping at once: abandoning {in_flight} delivery(ies) in flight (a part on"
                " the wire is resent under its GUID, or reconciled, by the next worker)",
                None,
                None,
                in_flight=in_flight,
            )

    def worker_stopped(self, worker_id: str) -> None:
        if self.log.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, "worker_stopped", "worker stopped", None, None)

    # -- deliveries --------------------------------------------------------------------

    def claimed(self, d: Delivery) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self._emit(
                logging.DEBUG,
                "claimed",
                f"claimed delivery {d.id} from part {d.start_index + 1}/{d.part_count}",
                d,
                None,
            )

    def part_sent(self, d: Delivery, part: Part, outcome: str, latency: float) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self._emit(
                logging.DEBUG,
                "part_sent",
                f"delivery {d.id} part {part.index + 1}/{d.part_count} {outcome}",
                d,
                part,
                outcome=outcome,
                latency_ms=round(latency * 1000.0, 1),
            )

    def send_failed(
        self, d: Delivery, part: Part, outcome: str, error: str, latency: float
    ) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self._emit(
                logging.DEBUG,
                "send_failed",
                f"delivery {d.id} part {part.index + 1}/{d.part_count} not delivered: {error}",
                d,
                part,
                outcome=outcome,
                latency_ms=round(latency * 1000.0, 1),
            )

    def retry_scheduled(
        self, d: Delivery, part: Part | None, delay: float, reason: str, *, burned: bool
    ) -> None:
        if self.log.isEnabledFor(logging.INFO):
            budget = f"attempt {d.attempts}/{d.max_attempts}" if burned else "no attempt burned"
            self._emit(
                logging.INFO,
                "retry_scheduled",
                f"delivery {d.id} retries in {delay:.1f}s ({budget}): {reason}",
                d,
                part,
                delay_s=round(delay, 3),
                burned=burned,
                reason=reason,
            )

    def paused(self, d: Delivery, part: Part, until: float, reason: str) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            self._emit(
                logging.WARNING,
                "paused",
                f"channel {d.channel} paused until {_iso(until)}: {reason}",
                d,
                part,
                until=_iso(until),
                reason=reason,
            )

    def parked(self, d: Delivery, part: Part, reason: str) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            self._emit(
                logging.WARNING,
                "parked",
                f"delivery {d.id} parked as unknown: {reason}",
                d,
                part,
                reason=reason,
            )

    def expired(self, d: Delivery, part: Part | None, reason: str) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            self._emit(
                logging.WARNING, "expired", f"delivery {d.id} expired: {reason}", d, part,
                reason=reason,
            )  # fmt: skip

    def gave_up(self, d: Delivery, part: Part, reason: str) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            self._emit(
                logging.WARNING, "gave_up", f"delivery {d.id} failed: {reason}", d, part,
                reason=reason,
            )  # fmt: skip

    def lease_lost(self, d: Delivery) -> None:
        if self.log.isEnabledFor(logging.WARNING):
            self._emit(
                logging.WARNING,
                "lease_lost",
                f"lease on delivery {d.id} lost (taken over or cancelled): stopping work on it",
                d,
                None,
            )

    def released(self, d: Delivery, reason: str) -> None:
        if self.log.isEnabledFor(logging.INFO):
            self._emit(
                logging.INFO, "released", f"delivery {d.id} released: {reason}", d, None,
                reason=reason,
            )  # fmt: skip

    def delivered(self, d: Delivery) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, "delivered", f"delivery {d.id} delivered", d, None)
