"""Span export for ``relaybox worker --otel-exporter otlp|console`` (docs/observability.md).

The worker records spans (``tracing.py``) whenever an SDK ``TracerProvider`` is set globally.
This module sets one up for the CLI worker, so no ``opentelemetry-instrument`` launcher is
needed:

* ``otlp``: a ``BatchSpanProcessor`` with the OTLP/HTTP (protobuf) exporter, configured by the
  standard environment (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``, headers,
  timeout, ``OTEL_BSP_*``); the resource comes from ``OTEL_SERVICE_NAME`` /
  ``OTEL_RESOURCE_ATTRIBUTES``, with ``service.name = relaybox-worker`` when neither names one;
* ``console``: each finished span as one JSON line on stderr (stdout stays for the CLI).

A provider that is already configured (``opentelemetry-instrument``, an application that
embeds the CLI) is kept and used as it is. The CLI imports this module only when an exporter
is asked for, so a worker without the setting imports nothing of the OpenTelemetry SDK.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from relaybox.errors import ConfigError
from relaybox.observability.logs import _RB_EVENT, _RB_FIELDS

DEFAULT_SERVICE_NAME = "relaybox-worker"
INSTALL_HINT = "pip install 'relaybox[otel]'"
OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"

log = logging.getLogger("relaybox.worker")


@dataclass
class SpanExport:
    """What :func:`start_export` set up; :meth:`shutdown` flushes the spans not yet exported."""

    exporter: str  # otlp or console
    description: str  # where spans go, for the log and the worker's ready line
    provider: Any = None  # the SDK TracerProvider set here; None when an existing one is used

    def shutdown(self) -> None:
        """Export what is still queued and stop (a provider set by someone else is left alone).

        With ``otlp`` this waits for the collector, at most about ``OTEL_EXPORTER_OTLP_TIMEOUT``
        (10 s by default) when it does not answer.
        """
        if self.provider is None:
            return
        provider, self.provider = self.provider, None
        try:
            provider.shutdown()
        except Exception as error:  # noqa: BLE001 - a failed flush must not fail the stop
            log.warning("exporting the last OpenTelemetry spans failed: %s", error)
            return
        _info(
            "tracing_stopped",
            "OpenTelemetry: span export stopped (the spans still queued went to the exporter)",
        )


def start_export(exporter: str, *, stream: TextIO | None = None) -> SpanExport:
    """Set a global SDK ``TracerProvider`` exporting with ``exporter`` (``otlp`` or ``console``).

    Raises :class:`ConfigError` (one CLI line) for an unknown exporter name or when the
    packages it needs are not installed. ``stream`` is where ``console`` writes (stderr).
    """
    if exporter not in ("otlp", "console"):
        raise ConfigError(f"unknown OpenTelemetry exporter {exporter!r}; choose otlp or console")
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError(
            f"OpenTelemetry export ({exporter}) needs the otel extra, which is not installed:"
            f" {INSTALL_HINT}"
        ) from None
    from relaybox.observability.tracing import tracing_configured

    if tracing_configured():
        existing = trace.get_tracer_provider()
        described = f"the TracerProvider already configured ({type(existing).__name__})"
        _info(
            "tracing_existing_provider",
            f"OpenTelemetry: using {described}, not setting up the {exporter} exporter",
            exporter=exporter,
        )
        return SpanExport(exporter, described)
    processor, description = _processor(exporter, stream)
    from opentelemetry.sdk.trace import TracerProvider

    # Shut down by the CLI (SpanExport.shutdown) once the worker has stopped, not at exit.
    provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _info(
        "tracing_started",
        f"OpenTelemetry: exporting spans to {description}",
        exporter=exporter,
        service=str(provider.resource.attributes.get("service.name")),
    )
    return SpanExport(exporter, description, provider)


def _processor(exporter: str, stream: TextIO | None) -> tuple[Any, str]:
    try:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ConfigError(
            f"OpenTelemetry export ({exporter}) needs the OpenTelemetry SDK, which is not"
            f" installed: {INSTALL_HINT}"
        ) from None
    if exporter == "console":

        def one_line(span: ReadableSpan) -> str:
            return str(span.to_json(indent=None)) + "\n"

        console = ConsoleSpanExporter(out=stream or sys.stderr, formatter=one_line)
        return SimpleSpanProcessor(console), "stderr (one JSON line per span)"
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(
            f"OpenTelemetry export (otlp) needs the OTLP exporter ({OTLP_PACKAGE}), which is"
            f" not installed: {INSTALL_HINT}"
        ) from None
    return BatchSpanProcessor(OTLPSpanExporter()), f"OTLP/HTTP {otlp_endpoint()}"


def otlp_endpoint() -> str:
    """Where the OTLP/HTTP exporter sends spans, read from the environment as it does."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return base.removesuffix("/") + "/v1/traces"


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME})
    return resource


def _info(event: str, message: str, **fields: Any) -> None:
    log.info(message, extra={_RB_EVENT: event, _RB_FIELDS: fields})
