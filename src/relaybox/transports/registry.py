"""Build each configured channel's transport from relaybox.toml."""

from __future__ import annotations

from relaybox.config import ChannelConfig, Config
from relaybox.transports.base import Transport


def build_transport(channel: ChannelConfig) -> Transport:
    if channel.transport == "webhook":
        from relaybox.transports.webhook import WebhookTransport

        assert channel.url is not None  # checked when the config was loaded
        return WebhookTransport(
            channel.url,
            dedup=channel.dedup,
            timeout_seconds=channel.send_timeout_seconds,
            headers=channel.headers,
            status_url=channel.status_url,
        )
    if channel.transport == "console":
        from relaybox.transports.console import ConsoleTransport

        return ConsoleTransport()
    if channel.transport == "memory":
        from relaybox.transports.memory import MemoryTransport

        return MemoryTransport(dedup=channel.dedup)
    if channel.transport == "noop":
        from relaybox.transports.noop import NoopTransport

        return NoopTransport()
    raise ValueError(f"unknown transport kind {channel.transport!r}")


def build_transports(config: Config) -> dict[str, Transport]:
    return {name: build_transport(channel) for name, channel in config.channels.items()}
