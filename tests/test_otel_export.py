"""``relaybox worker --otel-exporter``: the CLI worker exports its spans without a launcher.

Real processes and a real wire: an "agent" process enqueues a reply inside its own span, a
``relaybox worker --otel-exporter otlp`` process delivers it (noop transport) and exports its
spans with the OTLP/HTTP exporter to a fake collector in this test, a loopback HTTP server that
decodes each ``POST /v1/traces`` with opentelemetry-proto's ``ExportTraceServiceRequest``.
``console`` writes spans to stderr; bad input is one ``error:`` line; an already configured
TracerProvider is used as it is; without the setting nothing of the SDK is imported.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI

try:  # comes with opentelemetry-exporter-otlp-proto-http (the dev and otel extras)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span
except ImportError:
    if IN_CI:
        raise
    pytest.skip(
        "opentelemetry-proto is not installed (pip install -e '.[dev]' again)",
        allow_module_level=True,
    )

from relaybox.cli import run
from relaybox.models import Delivery
from relaybox.outbox.inspect import get_delivery
from relaybox.store import open_store

INSTALL_HINT = "pip install 'relaybox[otel]'"


# -- a fake OTLP/HTTP collector --------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        found[pair.key] = _value(pair.value)
    return found


class Collector:
    """Accepts ``POST /v1/traces`` (protobuf) and records every span it decodes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.received(self.path, self.headers.get("Content-Type", ""), body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def received(self, path: str, content_type: str, body: bytes) -> None:
        with self._lock:
            self.paths.append(path)
        if path != "/v1/traces":
            return
        assert content_type == "application/x-protobuf", content_type
        request = ExportTraceServiceRequest.FromString(body)
        decoded = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        {
                            "name": span.name,
                            "kind": Span.SpanKind.Name(span.kind),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "attributes": _attributes(span.attributes),
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                        }
                    )
        with self._lock:
            self.spans.extend(decoded)

    def recorded(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


# -- processes -------------------------------------------------------------------------------

AGENT = """
import asyncio, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
import relaybox
trace.set_tracer_provider(TracerProvider())  # real trace ids, nothing exported

async def main(url, config):
    rb = relaybox.open(url, config=config)
    with trace.get_tracer("agent").start_as_current_span("agent turn") as span:
        made = await rb.enqueue(channel="noop", thread_id="chat-1", recipient="u-1",
                                parts=["one", "two"], correlation_id="corr-1")
    rb.close()
    print(format(span.get_span_context().trace_id, "032x"), made.delivery.id)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any OTEL_* setting or $RELAYBOX_DB, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("RELAYBOX_DB", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def write_config(tmp_path: Path, worker: str = "") -> Path:
    config = tmp_path / "relaybox.toml"
    config.write_text(
        f'[worker]\npoll_interval_seconds = 0.02\n{worker}\n[channels.noop]\ntransport = "noop"\n',
        encoding="utf-8",
    )
    return config


def enqueue_in_a_span(url: str, config: Path) -> tuple[str, int]:
    """The agent's process: its trace id and the delivery it enqueued inside its span."""
    done = subprocess.run(
        [sys.executable, "-c", AGENT, url, str(config)],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    trace_id, delivery_id = done.stdout.split()
    return trace_id, int(delivery_id)


def enqueue_plain(url: str, config: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", url, "--config", str(config), "enqueue",
         "--channel", "noop", "--thread", "chat-1", "--to", "u-1", "--part", "one",
         "--part", "two", "--json"],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


class Worker:
    """``relaybox worker ...`` in its own process; stdout and stderr go to files."""

    def __init__(self, tmp_path: Path, url: str, config: Path, *args: str, env: dict[str, str]):
        self.out_path, self.err_path = tmp_path / "worker.out", tmp_path / "worker.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relaybox", "--db", url, "--config", str(config),
                 "worker", *args],
                stdout=out, stderr=err, env=env,
            )  # fmt: skip

    def out(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> str:
        deadline = time.monotonic() + 30
        while " delivering on " not in self.out():
            assert self.process.poll() is None, f"worker exited early:\n{self.err()}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.err()}"
            time.sleep(0.05)
        return self.out()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def wait_delivered(url: str, delivery_id: int) -> Delivery:
    store = open_store(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            delivery = store.read_sync(get_delivery(delivery_id))
            if str(delivery.status) == "delivered":
                return delivery
            assert time.monotonic() < deadline, f"not delivered: {delivery.status}"
            time.sleep(0.05)
    finally:
        store.close()


def wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def check_worker_spans(spans: list[dict[str, Any]], delivery: Delivery, trace_id: str) -> None:
    """One ``process noop`` span and one ``send noop`` per part, in the agent's trace."""
    (process,) = [s for s in spans if s["name"] == "process noop"]
    sends = [s for s in spans if s["name"] == "send noop"]
    assert process["kind"] == "SPAN_KIND_CONSUMER"
    assert process["attributes"]["messaging.system"] == "relaybox"
    assert process["attributes"]["messaging.operation.type"] == "process"
    assert process["attributes"]["relaybox.delivery.id"] == delivery.id
    assert process["trace_id"] == trace_id  # continues the trace stored with the enqueue
    assert process["parent"] is not None
    assert (delivery.trace_context or "").startswith(f"00-{trace_id}-{process['parent']}-")
    assert [s["attributes"]["messaging.message.id"] for s in sends] == [
        p.guid for p in delivery.parts
    ]
    for send in sends:
        assert send["kind"] == "SPAN_KIND_PRODUCER"
        assert send["trace_id"] == trace_id
        assert send["parent"] == process["span_id"]
        assert send["attributes"]["messaging.system"] == "relaybox"
        assert send["attributes"]["messaging.destination.name"] == "noop"
        assert send["attributes"]["relaybox.correlation_id"] == "corr-1"
        assert send["attributes"]["relaybox.outcome"] == "surfaced"
        assert send["scope"] == "relaybox"


# -- otlp ------------------------------------------------------------------------------------


def test_otlp_spans_of_the_last_sends_are_flushed_on_stop(
    sqlite_url: str, tmp_path: Path, collector: Collector
) -> None:
    """A 60 s batch delay: nothing leaves before SIGTERM, everything is exported on the stop."""
    config = write_config(tmp_path)
    trace_id, delivery_id = enqueue_in_a_span(sqlite_url, config)
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="60000")
    worker = Worker(tmp_path, sqlite_url, config, "--otel-exporter", "otlp", env=env)
    try:
        ready = worker.wait_ready()
        assert f"spans to OTLP/HTTP {collector.url}/v1/traces" in ready
        delivery = wait_delivered(sqlite_url, delivery_id)
        time.sleep(0.3)
        assert collector.recorded() == []  # still queued in the batch processor
        assert worker.stop() == 0, worker.err()
    finally:
        worker.kill()
    spans = collector.recorded()
    assert set(collector.paths) == {"/v1/traces"}
    assert len(spans) == 3, spans
    check_worker_spans(spans, delivery, trace_id)
    assert {s["resource"]["service.name"] for s in spans} == {"relaybox-worker"}
    err = worker.err()
    assert "OpenTelemetry: exporting spans to OTLP/HTTP" in err
    assert err.index("worker stopped") < err.index("span export stopped"), err
    assert "Traceback" not in err


def test_otlp_exports_while_running_from_the_toml_setting(
    sqlite_url: str, tmp_path: Path, collector: Collector
) -> None:
    """``[worker] otel_exporter = "otlp"``, the traces endpoint variable, a short batch delay."""
    config = write_config(tmp_path, 'otel_exporter = "otlp"\n')
    trace_id, delivery_id = enqueue_in_a_span(sqlite_url, config)
    env = clean_env(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{collector.url}/v1/traces",
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_SERVICE_NAME="support-bot-worker",
    )
    worker = Worker(tmp_path, sqlite_url, config, env=env)
    try:
        worker.wait_ready()
        delivery = wait_delivered(sqlite_url, delivery_id)
        wait_for(lambda: len(collector.recorded()) == 3, "3 spans at the collector")
        assert worker.process.poll() is None  # exported while the worker still runs
        assert worker.stop(signal.SIGINT) == 0, worker.err()
    finally:
        worker.kill()
    spans = collector.recorded()
    check_worker_spans(spans, delivery, trace_id)
    assert {s["resource"]["service.name"] for s in spans} == {"support-bot-worker"}


def test_cli_none_wins_over_the_toml_setting(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'otel_exporter = "console"\n')
    delivery_id = enqueue_plain(sqlite_url, config)
    worker = Worker(tmp_path, sqlite_url, config, "--otel-exporter", "none", env=clean_env())
    try:
        assert "spans to" not in worker.wait_ready()
        wait_delivered(sqlite_url, delivery_id)
        assert worker.stop() == 0, worker.err()
    finally:
        worker.kill()
    assert "OpenTelemetry" not in worker.err()
    assert '"name"' not in worker.err()


# -- console ---------------------------------------------------------------------------------


def test_console_prints_spans_to_stderr(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    delivery_id = enqueue_plain(sqlite_url, config)
    worker = Worker(
        tmp_path, sqlite_url, config, "--otel-exporter", "console", "--log-format", "json",
        env=clean_env(),
    )  # fmt: skip
    try:
        assert "spans to stderr" in worker.wait_ready()
        delivery = wait_delivered(sqlite_url, delivery_id)
        assert worker.stop() == 0, worker.err()
    finally:
        worker.kill()
    lines = [json.loads(line) for line in worker.err().splitlines()]
    spans = [x for x in lines if "context" in x]  # log lines have "event" instead
    logs = [x for x in lines if "event" in x]
    assert {x["event"] for x in logs} >= {"tracing_started", "worker_stopped", "tracing_stopped"}
    assert len(spans) == 3, spans
    (process,) = [s for s in spans if s["name"] == "process noop"]
    sends = [s for s in spans if s["name"] == "send noop"]
    assert process["kind"] == "SpanKind.CONSUMER" and process["parent_id"] is None
    assert [s["attributes"]["messaging.message.id"] for s in sends] == [
        p.guid for p in delivery.parts
    ]
    assert {s["parent_id"] for s in sends} == {process["context"]["span_id"]}
    assert all(s["attributes"]["messaging.system"] == "relaybox" for s in spans)
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"relaybox-worker"}
    assert "context" not in worker.out()  # stdout is for the CLI's own lines


# -- bad input -------------------------------------------------------------------------------


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.mark.parametrize("name", ["jaeger", "OTLP", "", "otlp,console"])
def test_unknown_exporter_is_a_usage_error(
    name: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "never.db"
    code = run(["--db", f"sqlite:///{db}", "worker", "--otel-exporter", name])
    err = capfd.readouterr().err
    assert code == 2
    line = one_error_line(err)
    assert "--otel-exporter" in line and "'otlp', 'console', 'none'" in line
    assert not db.exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("value", "shown"), [('"jaeger"', "'jaeger'"), ("1", "1"), ('""', "''"), ("true", "True")]
)
def test_bad_toml_setting_is_one_error_line(
    value: str, shown: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f"otel_exporter = {value}\n")
    code = run(["--db", f"sqlite:///{tmp_path}/x.db", "--config", str(config), "worker"])
    err = capfd.readouterr().err
    assert code == 1
    line = one_error_line(err)
    assert f"worker.otel_exporter must be one of none, otlp, console (got {shown})" in line


NOT_INSTALLED = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if the package were not installed
from relaybox.cli import run
code = run(sys.argv[2:])
print("exit", code)
"""


@pytest.mark.parametrize(
    ("blocked", "exporter", "missing"),
    [
        ("opentelemetry", "otlp", "needs the otel extra"),
        ("opentelemetry", "console", "needs the otel extra"),
        ("opentelemetry.sdk", "console", "needs the OpenTelemetry SDK"),
        (
            "opentelemetry.exporter.otlp.proto.http",
            "otlp",
            "(opentelemetry-exporter-otlp-proto-http)",
        ),
    ],
)
def test_not_installed_names_the_extra(
    blocked: str, exporter: str, missing: str, sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", NOT_INSTALLED, blocked, "--db", sqlite_url, "--config",
         str(config), "worker", "--otel-exporter", exporter],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.stdout.strip() == "exit 1", done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert missing in line and INSTALL_HINT in line, line


# -- an existing provider; no setting --------------------------------------------------------

IN_PROCESS = """
import json, os, signal, sys, threading, time
from relaybox.cli import run
from relaybox.outbox.inspect import get_delivery
from relaybox.store import open_store

mode, url, delivery_id, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
if mode == "existing":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)

def stop_once_delivered():
    store = open_store(url)
    deadline = time.monotonic() + 30
    try:
        while str(store.read_sync(get_delivery(delivery_id)).status) != "delivered":
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        store.close()
    os.kill(os.getpid(), signal.SIGTERM)  # the worker handles it: it has delivered

threading.Thread(target=stop_once_delivered, daemon=True).start()
code = run(["--db", url, *args])
report = {"exit": code}
if mode == "existing":
    report["provider_kept"] = trace.get_tracer_provider() is provider
    report["spans"] = sorted(s.name for s in memory.get_finished_spans())
report["loaded"] = sorted(
    m for m in sys.modules
    if sys.modules[m] is not None and m.startswith(
        ("opentelemetry.sdk", "opentelemetry.exporter", "relaybox.observability.export")
    )
)
print(json.dumps(report))
"""


def run_in_process(mode: str, url: str, delivery_id: int, *args: str, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, mode, url, str(delivery_id), *args],
        capture_output=True, text=True, timeout=90, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done


def test_an_existing_tracer_provider_is_used_as_it_is(
    sqlite_url: str, tmp_path: Path, collector: Collector
) -> None:
    config = write_config(tmp_path)
    delivery_id = enqueue_plain(sqlite_url, config)
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="50")
    report, done = run_in_process(
        "existing", sqlite_url, delivery_id, "--config", str(config), "worker",
        "--otel-exporter", "otlp", env=env,
    )  # fmt: skip
    assert report["exit"] == 0, done.stderr
    assert report["provider_kept"] is True
    assert report["spans"] == ["process noop", "send noop", "send noop"]
    assert "using the TracerProvider already configured (TracerProvider)" in done.stderr
    assert collector.paths == []  # nothing went to an OTLP exporter of relaybox's own


def test_without_the_setting_nothing_of_the_sdk_is_imported(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    delivery_id = enqueue_plain(sqlite_url, config)
    report, done = run_in_process(
        "plain", sqlite_url, delivery_id, "--config", str(config), "worker", env=clean_env()
    )
    assert report == {"exit": 0, "loaded": []}, done.stderr
    assert "OpenTelemetry" not in done.stderr
