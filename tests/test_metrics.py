"""Prometheus ``/metrics`` of a live worker process: scraped over HTTP, values move with work.

A real ``relaybox worker --metrics-port 0`` (any free port; the banner names it), a real
webhook receiver on loopback, both stores.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import relaybox
from _harness import WorkerProcess
from relaybox.errors import ConfigError
from relaybox.observability.metrics import MetricsListener
from relaybox.observability.metrics_http import MetricsEndpoint
from relaybox.store.base import Store, Tx
from relaybox.testing.loopback import LoopbackReceiver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(response: httpx.Response) -> Samples:
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape(url: str) -> Samples:
    return parse(httpx.get(url, timeout=10))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(url: str, check: object, what: str, timeout: float = 30.0) -> Samples:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {samples}"
        time.sleep(0.05)


def test_a_live_worker_serves_metrics_that_move(store_url: str, tmp_path: Path) -> None:
    with LoopbackReceiver() as rx:
        config = tmp_path / "relaybox.toml"
        config.write_text(
            "[worker]\nheartbeat_seconds = 0.2\nmetrics_refresh_seconds = 0.1\n"
            f'\n[channels.sms]\ntransport = "webhook"\nurl = "{rx.url}"\n'
            "backoff_base_seconds = 0.05\nbackoff_max_seconds = 0.1\n",
            encoding="utf-8",
        )
        worker = WorkerProcess(
            "m", store_url, config, tmp_path / "w.log", 4, extra_args=("--metrics-port", "0")
        ).start()
        try:
            worker.wait_ready()
            found = re.search(r"metrics at (http://\S+/metrics)", worker.output())
            assert found, worker.output()
            url = found.group(1)
            before = wait_for(url, lambda s: value(s, "relaybox_live_workers") == 1, "live")
            assert (
                value(before, "relaybox_parts_sent_total", channel="sms", outcome="surfaced") == 0
            )
            # Hold every send: the queue depth gauge shows the replies waiting.
            rx.hold_after(0)
            rx.fail_next(1, 500)
            asyncio.run(_enqueue(store_url, config, 3))
            wait_for(
                url,
                lambda s: (
                    sum(
                        value(s, "relaybox_queue_depth", channel="sms", status=st)
                        for st in ("queued", "sending")
                    )
                    == 3
                ),
                "queue depth 3",
            )
            rx.release()
            after = wait_for(
                url,
                lambda s: (
                    value(s, "relaybox_parts_sent_total", channel="sms", outcome="surfaced") == 6
                    and value(s, "relaybox_queue_depth", channel="sms", status="queued") == 0
                    and value(s, "relaybox_queue_depth", channel="sms", status="sending") == 0
                ),
                "six parts sent and an empty queue",
            )
            assert value(after, "relaybox_claims_total", channel="sms") >= 3
            assert value(after, "relaybox_delivered_total", channel="sms") == 3
            assert value(after, "relaybox_send_attempts_total", channel="sms",
                         outcome="receiver_down") == 1  # fmt: skip
            assert value(after, "relaybox_retries_total", channel="sms", burned="false") == 1
            assert value(after, "relaybox_send_duration_seconds_count", channel="sms") == 7
            assert value(after, "relaybox_enqueue_to_surfaced_seconds_count", channel="sms") == 6
            assert value(after, "relaybox_ack_batch_size_count") >= 1
            assert value(after, "relaybox_ack_batch_size_sum") == 6
            assert value(after, "relaybox_in_flight") == 0
            # Every ack, claim and heartbeat went through the store's group commit.
            assert value(after, "relaybox_store_group_commit_units_count") >= 1
            assert value(after, "relaybox_store_group_commit_units_sum") >= 6
            assert value(after, "relaybox_channel_paused", channel="sms") == 0
            assert value(after, "relaybox_store_gauges_refreshed_timestamp_seconds") > 0
            # The worker's supervised services report through the same endpoint.
            assert value(after, "relaybox_service_up", service="heartbeat") == 1
            assert value(after, "relaybox_service_up", service="registry") == 1
            assert value(after, "relaybox_service_up", service="metrics_gauges") == 1
            # Labels are bounded: no thread, user, delivery or worker ids anywhere.
            for _name, labels in after:
                allowed = {"channel", "outcome", "status", "burned", "service", "le"}
                assert {k for k, _v in labels} <= allowed
            assert worker.stop() == 0
        finally:
            if worker.alive():
                worker.kill()


def test_the_group_commit_histogram_counts_units_per_write_commit(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    listener = MetricsListener(registry)

    def sample(suffix: str) -> float:
        got = registry.get_sample_value(f"relaybox_store_group_commit_units_{suffix}")
        return 0.0 if got is None else got

    def boom(units: int) -> None:
        raise RuntimeError("listener broke")

    remove_boom = store.add_batch_listener(boom)  # a broken listener never breaks a batch
    remove = store.add_batch_listener(listener.store_batch)

    def write(tx: Tx) -> int:
        tx.execute_script("SELECT 1")
        return 1

    def fail(tx: Tx) -> int:
        raise ValueError("unit failed")

    assert store.run_sync(write) == 1
    assert (sample("count"), sample("sum")) == (1, 1)
    # Twenty units submitted together: however the writer batched them, every one is counted
    # in exactly one commit, and no commit counts more than the queue held.
    futures = [store.submit(write) for _ in range(20)]
    assert [f.result() for f in futures] == [1] * 20
    assert sample("sum") == 21
    assert 2 <= sample("count") <= 21
    # A lone unit that fails rolls its transaction back: nothing committed, nothing counted.
    with pytest.raises(ValueError, match="unit failed"):
        store.run_sync(fail)
    assert sample("sum") == 21
    # Read units are not group commits.
    store.read_sync(write)
    assert sample("sum") == 21
    failures = [r for r in caplog.records if "store batch listener" in r.getMessage()]
    assert len([r for r in failures if r.levelname == "ERROR"]) == 1
    remove()
    remove_boom()
    store.run_sync(write)
    assert sample("sum") == 21


async def _enqueue(store_url: str, config: Path, n: int) -> None:
    rb = relaybox.open(store_url, config=str(config))
    try:
        for i in range(n):
            await rb.enqueue(channel="sms", thread_id=f"t{i}", recipient="u", parts=["a", "b"])
    finally:
        rb.close()


def test_a_busy_metrics_port_is_a_one_line_error(sqlite_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "relaybox", "--db", sqlite_url, "worker",
             "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"},
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    ]


def test_an_unknown_log_format_is_a_one_line_error(sqlite_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relaybox", "--db", sqlite_url, "worker", "--log-format", "xml"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "RELAYBOX_DB"},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: unknown log format 'xml'; choose one of: text, json"
    ]


async def _endpoint(cache_seconds: float) -> tuple[MetricsEndpoint, asyncio.Task[None]]:
    endpoint = MetricsEndpoint(CollectorRegistry(), 0, "127.0.0.1", cache_seconds)
    return endpoint, asyncio.create_task(endpoint.serve())


async def _scrape(client: httpx.AsyncClient, url: str) -> Samples:
    return parse(await client.get(url))


async def test_scrapes_within_the_cache_interval_share_one_rendering() -> None:
    """A scraper polling every 100 ms costs the worker one render per cache interval."""
    endpoint, task = await _endpoint(0.5)
    listener = MetricsListener(endpoint.registry)
    url = endpoint.url
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            listener.audit_fallback()
            first = await _scrape(client, url)
            assert value(first, "relaybox_audit_fallbacks_total") == 1
            listener.audit_fallback()
            # Within the interval: the same rendering (the second fallback is not in it yet).
            again = await _scrape(client, url)
            assert value(again, "relaybox_audit_fallbacks_total") == 1
            assert (endpoint.renders, endpoint.scrapes) == (1, 2)
            # httpx asks for gzip. A scraper that does not, or that asks for OpenMetrics, gets
            # its own rendering, not the bytes another scraper was served.
            plain = await client.get(url, headers={"Accept-Encoding": "identity"})
            assert "Content-Encoding" not in plain.headers
            assert "relaybox_audit_fallbacks_total 2.0" in plain.text
            om = await client.get(
                url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert om.headers["Content-Type"].startswith("application/openmetrics-text")
            assert om.text.rstrip().endswith("# EOF")
            assert endpoint.renders == 3
            await asyncio.sleep(0.6)
            fresh = await _scrape(client, url)
            assert value(fresh, "relaybox_audit_fallbacks_total") == 2
            assert endpoint.renders == 4
            head = await client.head(url)
            assert head.status_code == 200 and head.content == b""
            assert head.reason_phrase == "OK"
            assert int(head.headers["Content-Length"]) > 0
    finally:
        task.cancel()
        endpoint.close()


async def test_with_no_cache_every_scrape_renders() -> None:
    endpoint, task = await _endpoint(0)
    listener = MetricsListener(endpoint.registry)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for n in (1, 2, 3):
                listener.audit_fallback()
                samples = await _scrape(client, endpoint.url)
                assert value(samples, "relaybox_audit_fallbacks_total") == n
    finally:
        task.cancel()
        endpoint.close()


async def test_bad_requests_get_an_answer_and_the_endpoint_keeps_serving() -> None:
    endpoint, task = await _endpoint(1.0)
    try:
        # Not HTTP at all: a 400, then the connection is closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(b"\x16\x03\x01 not http\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 400 ")
        writer.close()
        # A client that connects and says nothing does not block others.
        _idle_reader, idle = await asyncio.open_connection("127.0.0.1", endpoint.port)
        async with httpx.AsyncClient(timeout=10) as client:
            post = await client.post(endpoint.url, content=b"x" * 100_000)
            assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"
            assert (await client.get(endpoint.url)).status_code == 200
            assert (
                await client.get(endpoint.url.replace("/metrics", "/favicon.ico"))
            ).status_code == 204
        idle.close()
    finally:
        task.cancel()
        endpoint.close()


def test_a_busy_port_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            MetricsEndpoint(CollectorRegistry(), port, "127.0.0.1")


def test_per_part_metrics_match_what_prometheus_client_would_have_counted() -> None:
    """The lock-free per-part counters and histograms export exactly what prometheus-client's
    own Counter and Histogram would, bucket bounds included (a value on a bound counts in it)."""
    import types

    from prometheus_client import Counter, Histogram

    ours = CollectorRegistry()
    listener = MetricsListener(ours)
    theirs = CollectorRegistry()
    sent = Counter("relaybox_parts_sent", "x", ["channel", "outcome"], registry=theirs)
    duration = Histogram(
        "relaybox_send_duration_seconds", "x", ["channel"], registry=theirs,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    )  # fmt: skip
    latencies = [0.0, 0.005, 0.0051, 0.3, 1.0, 29.9, 30.0, 31.0, 400.0]
    for i, latency in enumerate(latencies):
        channel = "sms" if i % 2 else "chat"
        d = types.SimpleNamespace(channel=channel, created_at=time.time())
        listener.part_sent(d, None, "surfaced", latency)  # type: ignore[arg-type]
        sent.labels(channel, "surfaced").inc()
        duration.labels(channel).observe(latency)

    def samples(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, str], float]:
        out = {}
        for family in registry.collect():
            for s in family.samples:
                if s.name.startswith(prefix) and not s.name.endswith("_created"):
                    out[(s.name, str(sorted(s.labels.items())))] = s.value
        return out

    for prefix in ("relaybox_parts_sent", "relaybox_send_duration_seconds"):
        mine, reference = samples(ours, prefix), samples(theirs, prefix)
        assert mine == pytest.approx(reference) and len(mine) == len(reference) > 0
