"""Configuration: ``relaybox.toml`` (or ``--config``), validated strictly.

A malformed file or an invalid value is rejected with one clear line naming the file and the
key; unknown keys are errors too, because a typo that silently falls back to a default is the
kind of bug an operator finds only in an outage.

Example::

    [store]
    url = "sqlite:///relaybox.db"

    [worker]
    concurrency = 64

    [channels.sms]
    transport = "webhook"
    url = "http://127.0.0.1:9000/send"
    dedup = true            # the receiver honours Idempotency-Key
    max_attempts = 8
    max_age_seconds = 3600

A channel table has the generic keys of :class:`ChannelConfig` and :class:`RetryPolicy`, plus
the keys of its transport's options class. Transports are looked up by name in
:mod:`relaybox.transports.registry` (built-ins and plugins); this module knows none of them.
A transport's *preset* (the platform's documented limits) fills in the generic keys the table
does not set.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from relaybox.errors import ConfigError

DEFAULT_CONFIG_FILE = "relaybox.toml"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; see docs/delivery.md for the formula.

    delay(n) = min(backoff_max_seconds, backoff_base_seconds * 2 ** (n - 1)) scaled by a random
    factor in [1 - jitter, 1]; a transport's retry-after, when longer, wins.
    """

    max_attempts: int = 8  # runs that end in an answer that will not change by waiting
    backoff_base_seconds: float = 1.0
    # Also the longest wait between probes of a receiver that is down, so a reply goes out
    # within about this long after the receiver comes back (docs/delivery.md, outages).
    backoff_max_seconds: float = 60.0
    jitter: float = 0.5


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    transport: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_age_seconds: float | None = 3600.0  # replies older than this expire; None = never
    max_part_bytes: int = 4096
    max_parts: int = 50
    send_timeout_seconds: float = 15.0
    max_part_chars: int | None = None  # the platform's text limit (characters); None = none
    split_long_parts: bool = False  # split a part over max_part_chars instead of rejecting it
    parts_per_second: float | None = None  # pacing for the whole channel (None = unpaced)
    thread_parts_per_second: float | None = None  # pacing per conversation thread
    group_parts_per_minute: float | None = None  # pacing per group chat (transport tells groups)
    new_conversations_per_day: int | None = None  # threads first written to per UTC day
    options: Any = None  # the transport's own typed options (see transports/registry.py)


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 64
    lease_seconds: float = 5.0  # a dead worker's deliveries are resumed within about this
    # None: 0.05 s, or 1 s on PostgreSQL while LISTEN/NOTIFY wakes the worker (docs/postgres.md)
    poll_interval_seconds: float | None = None
    claim_batch: int = 64
    shutdown_grace_seconds: float = 10.0
    expire_interval_seconds: float = 5.0
    heartbeat_seconds: float = 5.0  # the workers registry row is refreshed this often
    dead_after_seconds: float = 30.0  # a worker not seen for this long counts as dead
    metrics_refresh_seconds: float = 5.0  # store gauges of /metrics are read this often
    # /metrics is rendered at most this often; scrapes in between get the last rendering
    metrics_cache_seconds: float = 1.0
    # OpenTelemetry span export of `relaybox worker` (--otel-exporter wins): none, otlp (the
    # OTLP/HTTP exporter, configured by the OTEL_* environment) or console (stderr).
    otel_exporter: str = "none"


@dataclass(frozen=True)
class AuditConfig:
    """``[audit]``: how failures are recorded (see docs/operations.md)."""

    max_payload_bytes: int = 16_384  # larger payloads are cut, with their size and SHA-256
    record_timeout_seconds: float = 5.0  # past this, the record goes to the log instead


@dataclass(frozen=True)
class HealthConfig:
    """``[health]``: thresholds past which ``relaybox health`` exits non-zero."""

    window_seconds: float = 3600.0  # failure rate and failure counts look this far back
    max_queue_depth: int = 10_000
    max_oldest_queued_seconds: float = 600.0
    max_failure_rate: float = 0.1  # failed / finished deliveries in the window, 0..1
    min_failure_sample: int = 20  # the failure rate is judged only over at least this many
    max_consecutive_failures: int = 10  # sends failed in a row on one channel (any worker)
    max_paused_seconds: float = 600.0  # a channel paused (rate limit) longer than this
    require_live_worker: bool = True  # queued work on a channel no live worker delivers
    max_unknown: int = 0  # deliveries parked for an operator
    max_gaps: int = 0  # inbound messages with no reply (silent loss)
    max_late_tasks: int = 100  # open agent tasks past a deadline or nudged (docs/tasks.md)
    max_timed_out_tasks: int = 0  # agent tasks that timed out within the window
    gap_age_seconds: float = 300.0  # an inbound message is a gap once unanswered this long


@dataclass(frozen=True)
class RetentionConfig:
    """``[retention]``: age in days after which history is pruned; 0 keeps it forever."""

    deliveries_days: float = 30.0  # finished deliveries, with their parts and attempts
    attempts_days: float = 30.0
    failures_days: float = 30.0
    inbound_days: float = 30.0  # answered or marked "no reply needed"
    # Unanswered inbound messages (gaps) are evidence of silent loss: kept longer.
    unanswered_inbound_days: float = 90.0
    batch_size: int = 500  # rows per delete transaction: the store is never locked for long
    interval_seconds: float = 3600.0  # how often a worker prunes
    enabled: bool = True  # whether workers prune at all


@dataclass(frozen=True)
class StepsConfig:
    """``[steps]``: idempotent tool steps (see docs/steps.md)."""

    lease_seconds: float = 30.0  # a crashed run's step is retried or flagged after about this
    retention_seconds: float = 604_800.0  # a stored outcome is replayed for 7 days, then pruned
    wait_timeout_seconds: float = 60.0  # a duplicate run waits this long for the first one
    poll_interval_seconds: float = 0.05  # how often a waiting duplicate looks again


@dataclass(frozen=True)
class TurnsConfig:
    """``[turns]``: agent turns and their resume (see docs/turns.md)."""

    lease_seconds: float = 30.0  # a dead attempt's turn may run again after about this
    max_attempts: int = 3  # attempts of one turn before it fails (job_failures + gaps)
    retry_delay_seconds: float = 30.0  # a turn whose attempt raised is resumed after this
    resume_after_seconds: float = 60.0  # a crashed turn waits this long past its lease
    #   for the platform's own redelivery before the resume service takes it
    resume_interval_seconds: float = 5.0  # how often the worker's resume service looks
    handler: str = ""  # "module:function" the worker hands resumed turns to ("": none)
    # One resumed attempt may run this long; then it is cancelled and counts as a failed
    # attempt (pending again, or failed at the attempt limit), so a hung handler never
    # blocks the resume loop.
    handler_timeout_seconds: float = 300.0
    resume_concurrency: int = 4  # resumed turns handled at once by one resume pass


@dataclass(frozen=True)
class MemoryConfig:
    """``[memory]``: size limits of scoped memory (see docs/memory.md)."""

    max_document_bytes: int = 65_536  # one working-memory document, as UTF-8 JSON
    max_note_bytes: int = 8_192
    max_message_bytes: int = 65_536


@dataclass(frozen=True)
class ContractDefaults:
    """Contract defaults of agent tasks (``[tasks]``, ``[tasks.channels.<name>]``); docs/tasks.md.

    Texts may use ``{summary}``. 0, negative or absurd durations are refused.
    """

    ack_within_seconds: float = 5.0  # the user hears "on it" within this
    progress_every_seconds: float = 45.0  # and a sign of life at least this often
    finish_within_seconds: float = 900.0  # and the result or an honest failure by this
    liveness_seconds: float = 30.0  # a running body that stops beating this long is interrupted
    ack_text: str = "On it: {summary}"
    nudge_text: str = "Still working on it: {summary}"
    timeout_text: str = "Sorry, I could not finish this in time: {summary}"
    interrupted_text: str = "Sorry, the work on this stopped unexpectedly: {summary}"
    hand_back: bool = False  # a failure is also recorded as an inbound message for the agent


@dataclass(frozen=True)
class TasksConfig:
    """``[tasks]``: the task supervisor and contract defaults (reloaded on SIGHUP)."""

    tick_seconds: float = 1.0  # how often the supervising worker looks for due deadlines
    scan_limit: int = 500  # due tasks handled per tick (the rest in the next tick)
    defaults: ContractDefaults = field(default_factory=ContractDefaults)
    channels: dict[str, ContractDefaults] = field(default_factory=dict)

    def contract_defaults(self, channel: str) -> ContractDefaults:
        return self.channels.get(channel, self.defaults)


@dataclass(frozen=True)
class ConsoleConfig:
    """``[console]``: ``relaybox serve`` (see docs/console.md). Empty strings mean "not set".

    Credentials are better given in the environment (``RELAYBOX_CONSOLE_ADMIN_TOKEN``, ...),
    which wins over this file.
    """

    host: str = "127.0.0.1"  # any other address needs credentials
    port: int = 8025
    admin_user: str = "admin"
    admin_password: str = ""
    admin_token: str = ""
    viewer_user: str = "viewer"
    viewer_password: str = ""
    viewer_token: str = ""
    secret: str = ""  # signs login sessions; random per process when empty


@dataclass(frozen=True)
class Config:
    store_url: str | None = None
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    audit: AuditConfig = field(default_factory=AuditConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    steps: StepsConfig = field(default_factory=StepsConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    turns: TurnsConfig = field(default_factory=TurnsConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    source: str = "(defaults)"

    def channel(self, name: str) -> ChannelConfig:
        from relaybox.errors import UnknownChannel

        try:
            return self.channels[name]
        except KeyError:
            known = ", ".join(sorted(self.channels)) or "none"
            raise UnknownChannel(
                f"unknown channel {name!r}; configured channels: {known} (see {self.source})"
            ) from None


def default_config() -> Config:
    """What relaybox uses with no relaybox.toml: one ``console`` channel for trying things."""
    return Config(channels={"console": _channel("console", {"transport": "console"}, "(defaults)")})


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path``, or ``./relaybox.toml`` if it exists, or the defaults."""
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            return default_config()
        path = DEFAULT_CONFIG_FILE
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config {source}: {error.strerror or error}") from error
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"config {source} is not UTF-8 text") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {source} is not valid TOML: {error}") from error
    return parse_config(data, source)


def store_url_of(path: str | os.PathLike[str] | None = None) -> str | None:
    """``[store] url`` of a config file even when the rest of it is invalid, else None.

    Inspection commands answer despite a broken relaybox.toml (they warn first); they still
    want to look at the store the file names.
    """
    if path is None:
        path = DEFAULT_CONFIG_FILE
    try:
        data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    store = data.get("store")
    url = store.get("url") if isinstance(store, dict) else None
    return url if isinstance(url, str) and url else None


def parse_config(data: dict[str, Any], source: str = "(inline)") -> Config:
    _only_keys(data, {"store", "worker", "channels", "tasks", *_SECTIONS}, "", source)
    store = _table(data, "store", source)
    _only_keys(store, {"url"}, "store.", source)
    store_url = store.get("url")
    if store_url is not None and (not isinstance(store_url, str) or not store_url):
        raise ConfigError(f"{source}: store.url must be a non-empty string")
    worker = _build(WorkerConfig, _table(data, "worker", source), "worker.", source)
    if worker.dead_after_seconds <= worker.heartbeat_seconds:
        raise ConfigError(
            f"{source}: worker.dead_after_seconds ({worker.dead_after_seconds:g}) must be"
            f" greater than worker.heartbeat_seconds ({worker.heartbeat_seconds:g})"
        )
    channels_table = _table(data, "channels", source)
    channels = {
        name: _channel(name, body, source) for name, body in channels_table.items()
    } or default_config().channels
    sections = {
        key: _build(kind, _table(data, key, source), f"{key}.", source)
        for key, kind in _SECTIONS.items()
    }
    tasks = parse_tasks(_table(data, "tasks", source), source)
    for name in tasks.channels:
        if name not in channels:
            raise ConfigError(f"{source}: tasks.channels.{name} names no configured channel")
    return Config(
        store_url=store_url,
        worker=worker,
        channels=channels,
        tasks=tasks,
        source=source,
        **sections,
    )


MAX_CONTRACT_SECONDS = 30 * 86_400.0  # a deadline further out than this is a mistake


def parse_tasks(table: dict[str, Any], source: str) -> TasksConfig:
    """``[tasks]``: supervisor settings, contract defaults, per-channel overrides."""
    plain = {k: v for k, v in table.items() if k != "channels"}
    supervisor_keys = {"tick_seconds", "scan_limit"}
    supervisor = {k: v for k, v in plain.items() if k in supervisor_keys}
    defaults: ContractDefaults = _contract(
        {k: v for k, v in plain.items() if k not in supervisor_keys},
        ContractDefaults(),
        "tasks.",
        source,
        extra=supervisor_keys | {"channels"},
    )
    overrides = _table(table, "channels", source)
    channels: dict[str, ContractDefaults] = {}
    for name, body in overrides.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: tasks.channels.{name} must be a table")
        channels[name] = _contract(body, defaults, f"tasks.channels.{name}.", source)
    built: TasksConfig = _build(TasksConfig, supervisor, "tasks.", source)
    return replace(built, defaults=defaults, channels=channels)


def _contract(
    values: dict[str, Any],
    base: ContractDefaults,
    prefix: str,
    source: str,
    extra: set[str] | None = None,
) -> ContractDefaults:
    settable = {f.name for f in fields(ContractDefaults)}
    _only_keys(values, settable, prefix, source, extra or set())
    checked = {
        key: _check_value(key, value, getattr(base, key), prefix, source)
        for key, value in values.items()
    }
    for key, value in checked.items():
        if key.endswith("_text"):
            try:
                value.format(summary="")
            except (KeyError, IndexError, ValueError) as error:
                raise ConfigError(
                    f"{source}: {prefix}{key} may only use {{summary}} (and {{{{ }}}} for braces):"
                    f" {error!r}"
                ) from None
        if key.endswith("_seconds") and value > MAX_CONTRACT_SECONDS:
            raise ConfigError(
                f"{source}: {prefix}{key} must be at most {MAX_CONTRACT_SECONDS:g} (got {value!r})"
            )
    return replace(base, **checked)


# Plain sections: every key is a field of the dataclass, checked by _check_value.
_SECTIONS: dict[str, type[Any]] = {
    "audit": AuditConfig,
    "health": HealthConfig,
    "retention": RetentionConfig,
    "steps": StepsConfig,
    "memory": MemoryConfig,
    "turns": TurnsConfig,
    "console": ConsoleConfig,
}


def _channel(name: str, body: Any, source: str) -> ChannelConfig:
    from relaybox.transports.options import option_names, parse_options
    from relaybox.transports.registry import get_kind

    prefix = f"channels.{name}."
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: channels.{name} must be a table")
    try:
        kind = get_kind(body.get("transport"))
    except ConfigError as error:
        raise ConfigError(f"{source}: {prefix}{error}") from None
    retry_keys = {f.name for f in fields(RetryPolicy)}
    option_keys = option_names(kind.options)
    # One list of every key this channel may set (limits, retry policy, transport options),
    # so a typo's error names the key the user meant whichever group it belongs to.
    channel_keys = {f.name for f in fields(ChannelConfig)} - {
        "retry", "name", "transport", "defaults", "channels", "options"
    }  # fmt: skip
    _only_keys(body, channel_keys | retry_keys | set(option_keys) | {"transport"}, prefix, source)
    generic = {**kind.preset, **{k: v for k, v in body.items() if k not in option_keys}}
    retry = _build(
        RetryPolicy, {k: v for k, v in generic.items() if k in retry_keys}, prefix, source
    )
    rest = {k: v for k, v in generic.items() if k not in retry_keys and k != "transport"}
    options = parse_options(
        kind.options, {k: v for k, v in body.items() if k in option_keys}, prefix, source
    )
    channel: ChannelConfig = _build(
        ChannelConfig, rest, prefix, source, name=name, transport=kind.name
    )
    # max_age_seconds = 0 means "never expire".
    max_age = channel.max_age_seconds or None
    return replace(channel, retry=retry, max_age_seconds=max_age, options=options)


_POSITIVE = {
    "concurrency", "lease_seconds", "poll_interval_seconds", "claim_batch",
    "shutdown_grace_seconds", "expire_interval_seconds", "max_attempts",
    "backoff_base_seconds", "backoff_max_seconds", "max_part_bytes", "max_parts",
    "send_timeout_seconds", "parts_per_second", "thread_parts_per_second",
    "max_payload_bytes", "record_timeout_seconds", "window_seconds",
    "max_oldest_queued_seconds", "gap_age_seconds", "batch_size", "interval_seconds",
    "retention_seconds", "wait_timeout_seconds", "max_document_bytes", "max_note_bytes",
    "max_message_bytes", "retry_delay_seconds", "resume_after_seconds",
    "resume_interval_seconds", "handler_timeout_seconds", "resume_concurrency",
    "tick_seconds", "scan_limit", "ack_within_seconds",
    "progress_every_seconds", "finish_within_seconds", "liveness_seconds", "port",
    "heartbeat_seconds", "dead_after_seconds", "metrics_refresh_seconds",
    "max_consecutive_failures", "max_paused_seconds",
}  # fmt: skip
# Zero is meaningful here: "alert on any" for thresholds, "keep forever" for retention ages.
_NON_NEGATIVE = {
    "max_queue_depth", "max_unknown", "max_gaps", "max_late_tasks", "max_timed_out_tasks",
    "deliveries_days", "attempts_days",
    "failures_days", "inbound_days", "unanswered_inbound_days", "min_failure_sample",
    "metrics_cache_seconds",
}  # fmt: skip
# Channel limits (docs/platforms.md).
_POSITIVE |= {"max_part_chars", "group_parts_per_minute", "new_conversations_per_day"}
_FRACTIONS = {"jitter", "max_failure_rate"}
# Whole numbers whose default is None (so the default's type cannot tell).
_WHOLE = {"max_part_chars", "new_conversations_per_day"}
# Strings that must be one of a few words.
OTEL_EXPORTERS = ("none", "otlp", "console")
_CHOICES: dict[str, tuple[str, ...]] = {"otel_exporter": OTEL_EXPORTERS}


def _build(kind: type[Any], values: dict[str, Any], prefix: str, source: str, **fixed: Any) -> Any:
    known = {f.name: f for f in fields(kind)}
    settable = set(known) - set(fixed) - {
        "retry", "name", "transport", "defaults", "channels", "options"
    }  # fmt: skip
    _only_keys(values, settable, prefix, source)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(kind(**fixed), key) if fixed else getattr(kind(), key)
        checked[key] = _check_value(key, value, default, prefix, source)
    return kind(**fixed, **checked)


def _check_value(key: str, value: Any, default: Any, prefix: str, source: str) -> Any:
    where = f"{source}: {prefix}{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false (got {value!r})")
        return value
    if key in _CHOICES:
        if not isinstance(value, str) or value not in _CHOICES[key]:
            raise ConfigError(f"{where} must be one of {', '.join(_CHOICES[key])} (got {value!r})")
        return value
    if isinstance(default, str):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty string (got {value!r})")
        return value
    if key in _FRACTIONS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"{where} must be a number between 0 and 1 (got {value!r})")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number (got {value!r})")
    if key == "max_age_seconds" and value < 0:
        raise ConfigError(f"{where} must be 0 (never expire) or more (got {value!r})")
    if key in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{where} must be 0 or more (got {value!r})")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"{where} must be greater than 0 (got {value!r})")
    if (isinstance(default, int) and not isinstance(default, bool)) or key in _WHOLE:
        if not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number (got {value!r})")
        return value
    return float(value)


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return value


def _only_keys(
    data: dict[str, Any], allowed: set[str], prefix: str, source: str, extra: set[str] | None = None
) -> None:
    extra = extra or set()
    unknown = sorted(set(data) - allowed - extra)
    if unknown:
        names = ", ".join(sorted(allowed | extra))
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]}; allowed: {names}")
