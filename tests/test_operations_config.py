"""``[audit]``, ``[health]`` and ``[retention]`` in relaybox.toml: defaults and strict checks."""

from __future__ import annotations

import pytest

from relaybox.cli.durations import parse_duration
from relaybox.config import ConfigError, parse_config


def test_defaults_and_overrides():
    default = parse_config({})
    assert default.audit.max_payload_bytes == 16_384
    assert default.retention.failures_days == 30 and default.retention.enabled
    assert default.health.max_unknown == 0
    config = parse_config(
        {
            "audit": {"max_payload_bytes": 1024, "record_timeout_seconds": 0.5},
            "health": {"max_failure_rate": 0.25, "max_queue_depth": 0, "window_seconds": 600},
            "retention": {"failures_days": 7.5, "inbound_days": 0, "enabled": False},
        }
    )
    assert config.audit.max_payload_bytes == 1024 and config.audit.record_timeout_seconds == 0.5
    assert config.health.max_failure_rate == 0.25 and config.health.max_queue_depth == 0
    assert config.retention.failures_days == 7.5 and config.retention.inbound_days == 0
    assert not config.retention.enabled


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"retention": {"failure_days": 3}}, "unknown key retention.failure_days"),
        ({"retention": {"failures_days": -1}}, "retention.failures_days must be 0 or more"),
        ({"retention": {"batch_size": 0}}, "retention.batch_size must be greater than 0"),
        ({"retention": {"batch_size": 2.5}}, "retention.batch_size must be a whole number"),
        ({"retention": {"enabled": "yes"}}, "retention.enabled must be true or false"),
        ({"health": {"max_failure_rate": 1.5}}, "health.max_failure_rate must be a number between"),
        ({"health": {"max_gaps": -2}}, "health.max_gaps must be 0 or more"),
        ({"health": {"window_seconds": 0}}, "health.window_seconds must be greater than 0"),
        ({"audit": {"max_payload_bytes": "16k"}}, "audit.max_payload_bytes must be a number"),
        ({"audit": []}, "[audit] must be a table"),
        ({"worker": {"otel_exporter": "jaeger"}}, "worker.otel_exporter must be one of none,"),
        ({"worker": {"otel_exporter": 1}}, "worker.otel_exporter must be one of none, otlp,"),
        ({"worker": {"metrics_cache_seconds": -1}}, "worker.metrics_cache_seconds must be 0 or"),
        (
            {"worker": {"metrics_cache_seconds": "1s"}},
            "worker.metrics_cache_seconds must be a number",
        ),
    ],
)
def test_bad_values_are_rejected_with_the_key(data: dict[str, object], message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data, "relaybox.toml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1.5h", 5400),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
        (" 10 M ", 600),
    ],
)
def test_durations(text: str, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5m", "5 minutes", "1e3s", "5mm"])
def test_bad_durations(text: str):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_config_polish_url_needs_a_host_and_unknown_keys_list_every_allowed_key() -> None:
    from relaybox.config import parse_config
    from relaybox.errors import ConfigError

    with pytest.raises(ConfigError, match="url must be an http:// or https:// URL"):
        parse_config({"channels": {"x": {"transport": "webhook", "url": "http://"}}})
    with pytest.raises(ConfigError) as typo:
        parse_config(
            {"channels": {"x": {"transport": "webhook", "url": "http://h/x", "max_attempt": 3}}}
        )
    message = str(typo.value)
    assert "unknown key channels.x.max_attempt" in message
    for key in ("max_attempts", "backoff_base_seconds", "url", "dedup", "max_part_bytes"):
        assert key in message  # retry policy, transport options and limits alike
