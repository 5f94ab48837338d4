"""OpenTelemetry: the worker's spans join the agent's trace across processes.

Two real processes, each with the OpenTelemetry SDK and its in-memory exporter: an "agent"
that runs a step and enqueues a reply inside its own span, and a worker that delivers it.
Each prints the spans it finished as JSON. The trace context travels only through the store.
A third run blocks the ``opentelemetry`` packages: everything still works, nothing is stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from relaybox.outbox.inspect import get_delivery
from relaybox.store import open_store

SDK_SETUP = """
import asyncio, json, sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

def dump():
    out = []
    for s in exporter.get_finished_spans():
        out.append({
            "name": s.name, "kind": s.kind.name,
            "trace_id": format(s.context.trace_id, "032x"),
            "span_id": format(s.context.span_id, "016x"),
            "parent": None if s.parent is None else format(s.parent.span_id, "016x"),
            "attributes": {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in s.attributes.items()},
        })
    print(json.dumps(out))
"""

AGENT = """
import relaybox
async def main(url, config):
    rb = relaybox.open(url, config=config)
    async def look_up(step):
        return {"flights": 3}
    with trace.get_tracer("agent").start_as_current_span("agent turn"):
        await rb.step("s-1", relaybox.Intent("look_up", {"q": "flights"}), look_up,
                      resource_id="u-1", correlation_id="corr-1")
        result = await rb.enqueue(channel="mem", thread_id="chat-1", recipient="u-1",
                                  parts=["Found 3 flights.", "Book one?"],
                                  correlation_id="corr-1", reply_key="r-1")
    rb.close()
    return result.delivery.id
delivery_id = asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

WORKER = """
import relaybox
from relaybox.outbox.inspect import get_delivery
async def main(url, config):
    rb = relaybox.open(url, config=config)
    worker = relaybox.Worker(rb.store, rb.config)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 30
    while str((await rb.store.read(get_delivery(1))).status) != "delivered":
        assert time.monotonic() < deadline, "not delivered"
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    rb.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

BLOCKED = """
import sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
import asyncio, time
import relaybox
from relaybox.outbox.inspect import get_delivery
async def main(url, config):
    rb = relaybox.open(url, config=config)
    result = await rb.enqueue(channel="mem", thread_id="chat-1", recipient="u-1",
                              parts=["hi"], reply_key="r-1")
    worker = relaybox.Worker(rb.store, rb.config)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 30
    while str((await rb.store.read(get_delivery(result.delivery.id))).status) != "delivered":
        assert time.monotonic() < deadline, "not delivered"
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    rb.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))
print("loaded:", sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]))
"""


def run(script: str, url: str, config: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, url, str(config)],
        capture_output=True, text=True, timeout=90,
        env={k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "relaybox.toml"
    config.write_text(
        '[worker]\npoll_interval_seconds = 0.02\n\n[channels.mem]\ntransport = "memory"\n',
        encoding="utf-8",
    )
    return config


def test_worker_send_spans_join_the_agents_trace(store_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    agent = json.loads(run(SDK_SETUP + AGENT + "dump()\n", store_url, config))
    worker = json.loads(run(SDK_SETUP + WORKER + "dump()\n", store_url, config))
    spans = {s["name"]: s for s in agent}
    turn, create, step = spans["agent turn"], spans["create mem"], spans["step look_up"]
    assert create["parent"] == turn["span_id"] and step["parent"] == turn["span_id"]
    assert create["kind"] == "PRODUCER"
    assert create["attributes"]["messaging.system"] == "relaybox"
    assert create["attributes"]["messaging.operation.type"] == "create"
    assert create["attributes"]["messaging.destination.name"] == "mem"
    assert create["attributes"]["relaybox.correlation_id"] == "corr-1"
    assert step["attributes"]["relaybox.step.id"] == "s-1"

    store = open_store(store_url)
    try:
        delivery = store.read_sync(get_delivery(1))
    finally:
        store.close()
    assert (delivery.trace_context or "").startswith(f"00-{turn['trace_id']}-{create['span_id']}-")

    (process,) = [s for s in worker if s["name"] == "process mem"]
    sends = [s for s in worker if s["name"] == "send mem"]
    assert process["trace_id"] == turn["trace_id"]  # the same trace, another process
    assert process["parent"] == create["span_id"]
    assert process["kind"] == "CONSUMER"
    assert process["attributes"]["messaging.operation.type"] == "process"
    assert [s["parent"] for s in sends] == [process["span_id"]] * 2
    assert all(s["trace_id"] == turn["trace_id"] and s["kind"] == "PRODUCER" for s in sends)
    assert [s["attributes"]["messaging.message.id"] for s in sends] == [
        p.guid for p in delivery.parts
    ]
    for s in sends:
        attributes: dict[str, Any] = s["attributes"]
        assert attributes["messaging.operation.type"] == "send"
        assert attributes["messaging.destination.name"] == "mem"
        assert attributes["relaybox.correlation_id"] == "corr-1"
        assert attributes["relaybox.outcome"] == "surfaced"


def test_without_opentelemetry_nothing_changes(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run(BLOCKED, sqlite_url, config) == "loaded: []"
    store = open_store(sqlite_url)
    try:
        delivery = store.read_sync(get_delivery(1))
    finally:
        store.close()
    assert str(delivery.status) == "delivered" and delivery.trace_context is None
