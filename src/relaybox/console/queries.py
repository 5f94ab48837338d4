"""Read units behind the console's pages and API: overview, deliveries list, charts.

Each unit is a plain function of a transaction, run with ``store.read(...)``: on the store's
read path, never queued behind the worker's writes. Every query is indexed (see
``store/sql/<dialect>/console.sql`` and ``benchmarks/console_queries.py`` for the timings on a
store of 1M deliveries).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from relaybox.console.filters import DeliveryFilter
from relaybox.models import Delivery, Status
from relaybox.store import Tx
from relaybox.store.base import Unit
from relaybox.tasks import inspect as task_inspect
from relaybox.workers.inspect import list_workers

WINDOWS = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 24 * 3600.0}
BUCKETS = 60  # points per chart, whatever the window
LAST_ID = 2**63 - 1  # "below this id": the first page of a newest-first list


@dataclass(slots=True)
class ChannelRow:
    """One line of the overview: where a channel's deliveries are now."""

    channel: str
    queued: int = 0
    sending: int = 0
    unknown: int = 0
    delivered_last_hour: int = 0
    failed_last_hour: int = 0  # deliveries that ended failed or expired in the last hour
    failures_last_hour: int = 0  # failure records (every failed attempt) in the last hour
    oldest_queued_seconds: float | None = None
    paused_deliveries: int = 0
    paused_until: float | None = None


@dataclass(frozen=True, slots=True)
class TaskCounts:
    """Agent tasks (docs/tasks.md): open ones, late ones, and timeouts in the last hour."""

    open: int = 0
    late: int = 0
    timed_out_last_hour: int = 0


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A live worker process, from the registry its heartbeat keeps (docs/observability.md)."""

    id: str
    host: str
    pid: int
    version: str
    channels: list[str]
    in_flight: int
    concurrency: int
    started_at: float
    last_seen_at: float
    seen_seconds_ago: float


@dataclass(frozen=True, slots=True)
class Overview:
    at: float
    channels: list[ChannelRow]
    totals: ChannelRow
    tasks: TaskCounts = field(default_factory=TaskCounts)
    workers: list[WorkerRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def overview(now: float | None = None, dead_after: float = 30.0) -> Unit[Overview]:
    """Unit (read): per channel, queued / sending / parked / failed in the last hour, ...;
    live workers (seen within ``dead_after`` seconds) and the channels they report paused."""

    def unit(tx: Tx) -> Overview:
        at = time.time() if now is None else now
        hour_ago = at - 3600.0
        rows: dict[str, ChannelRow] = {}

        def row(channel: str) -> ChannelRow:
            return rows.setdefault(channel, ChannelRow(channel))

        for r in tx.fetch_all("console_active_by_channel"):
            line = row(r["channel"])
            setattr(line, r["status"], int(r["n"]))
            if r["status"] in ("queued", "sending") and r["oldest_created_at"] is not None:
                age = max(0.0, at - float(r["oldest_created_at"]))
                line.oldest_queued_seconds = max(line.oldest_queued_seconds or 0.0, age)
        for r in tx.fetch_all("console_finished_by_channel", {"since": hour_ago}):
            line = row(r["channel"])
            if r["status"] == "delivered":
                line.delivered_last_hour += int(r["n"])
            elif r["status"] in ("failed", "expired"):
                line.failed_last_hour += int(r["n"])
        for r in tx.fetch_all("console_failures_by_channel", {"since": hour_ago}):
            row(r["channel"] or "-").failures_last_hour += int(r["n"])
        for r in tx.fetch_all("console_paused_channels", {"now": at}):
            line = row(r["channel"])
            line.paused_deliveries = int(r["n"])
            line.paused_until = float(r["until"])
        workers = [w for w in list_workers(dead_after, at)(tx) if w.alive]
        for w in workers:
            for channel, state in w.channel_state.items():
                until = state.get("paused_until") if isinstance(state, dict) else None
                if isinstance(until, int | float) and until > at:
                    line = row(channel)
                    line.paused_until = max(line.paused_until or 0.0, float(until))
        channels = sorted(rows.values(), key=lambda c: c.channel)
        tasks = task_inspect.health_counts(at, hour_ago)(tx)
        counts = TaskCounts(tasks.open, tasks.late, tasks.timed_out)
        live = [
            WorkerRow(
                w.id,
                w.host,
                w.pid,
                w.version,
                list(w.channels),
                w.in_flight,
                w.concurrency,
                w.started_at,
                w.last_seen_at,
                w.seen_seconds_ago,
            )
            for w in workers
        ]
        return Overview(at, channels, _totals(channels), counts, live)

    return unit


def _totals(channels: list[ChannelRow]) -> ChannelRow:
    total = ChannelRow("all channels")
    for c in channels:
        total.queued += c.queued
        total.sending += c.sending
        total.unknown += c.unknown
        total.delivered_last_hour += c.delivered_last_hour
        total.failed_last_hour += c.failed_last_hour
        total.failures_last_hour += c.failures_last_hour
        total.paused_deliveries += c.paused_deliveries
        if c.oldest_queued_seconds is not None:
            total.oldest_queued_seconds = max(
                total.oldest_queued_seconds or 0.0, c.oldest_queued_seconds
            )
    return total


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_before_id: int | None  # pass as before_id for the next (older) page

    def to_json(self) -> dict[str, Any]:
        return {
            "deliveries": [d.to_json() for d in self.deliveries],
            "next_before_id": self.next_before_id,
        }


def deliveries_page(
    where: DeliveryFilter, *, before_id: int | None = None, limit: int = 50
) -> Unit[DeliveryPage]:
    """Unit (read): deliveries matching ``where``, newest first, one page (keyset paging)."""
    query = "console_deliveries"
    if where.correlation_id is not None:
        query = "console_deliveries_by_correlation"
    elif where.thread_id is not None:
        query = "console_deliveries_by_thread"
    elif where.status is not None:
        query = "console_deliveries_by_status"

    def unit(tx: Tx) -> DeliveryPage:
        first = LAST_ID if before_id is None else before_id
        params = {**where.params(), "before_id": first, "limit": limit + 1}
        rows = [Delivery.from_row(r) for r in tx.fetch_all(query, params)]
        more = len(rows) > limit
        rows = rows[:limit]
        return DeliveryPage(rows, rows[-1].id if more and rows else None)

    return unit


def count_matching(where: DeliveryFilter, statuses: tuple[Status, ...]) -> Unit[int]:
    """Unit (read): how many deliveries in ``statuses`` match ``where`` (a bulk preview)."""

    def unit(tx: Tx) -> int:
        total = 0
        for wanted in statuses:
            found = tx.fetch_one("console_count_by_status", where.with_status(wanted).params())
            total += int(found["n"]) if found else 0
        return total

    return unit


def matching_ids(where: DeliveryFilter, before_id: int | None, limit: int) -> Unit[list[int]]:
    """Unit (read): the next ``limit`` ids below ``before_id`` matching ``where`` (one status)."""
    if where.status is None:
        raise ValueError("matching_ids needs a status")

    def unit(tx: Tx) -> list[int]:
        first = LAST_ID if before_id is None else before_id
        params = {**where.params(), "before_id": first, "limit": limit}
        return [int(r["id"]) for r in tx.fetch_all("console_ids_by_status", params)]

    return unit


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    unit: str
    points: list[float | None]  # one per bucket, oldest first


@dataclass(frozen=True, slots=True)
class Charts:
    window: str
    since: float
    bucket_seconds: float
    series: list[Series]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BucketStats:
    """What one chart bucket holds (counts, and enqueue-to-surfaced percentiles)."""

    surfaced: float
    failures: float
    enqueued: float
    finished: float
    p50: float | None
    p95: float | None
    p99: float | None


class ChartCache:
    """Buckets that can no longer change, kept between requests (one per console process).

    A chart bucket is final once it ended ``FINAL_AFTER`` seconds ago (an attempt row is
    written when its send ends, so a late row may still land in a bucket just closed). Later
    requests then read only the newest buckets: the 24 h charts cost a 24-minute query
    instead of a day's rows. Everything still comes from stored rows: a restarted console
    rebuilds the cache on its first request.
    """

    FINAL_AFTER = 120.0

    def __init__(self) -> None:
        self._buckets: dict[tuple[float, float], BucketStats] = {}
        self._lock = threading.Lock()

    def get(self, bucket: float, start: float) -> BucketStats | None:
        with self._lock:
            return self._buckets.get((bucket, start))

    def put(self, bucket: float, start: float, stats: BucketStats, now: float) -> None:
        if start + bucket > now - self.FINAL_AFTER:
            return  # not final yet
        with self._lock:
            self._buckets[(bucket, start)] = stats
            if len(self._buckets) > 4 * BUCKETS * len(WINDOWS):
                oldest = now - 2 * max(WINDOWS.values())
                for key in [k for k in self._buckets if k[1] < oldest]:
                    del self._buckets[key]


def charts(window: str, now: float | None = None, cache: ChartCache | None = None) -> Unit[Charts]:
    """Unit (read): the overview's charts over ``window`` (1h, 6h or 24h), 60 points each.

    Everything comes from stored rows (attempts, failures, deliveries), so the charts survive
    a restart of the console and cover what happened while it was down. Buckets sit on a
    fixed grid (multiples of the bucket length), so a ``cache`` can keep the final ones.
    """
    span = WINDOWS[window]
    bucket = span / BUCKETS

    def unit(tx: Tx) -> Charts:
        at = time.time() if now is None else now
        since = math.ceil(at / bucket) * bucket - span
        starts = [since + i * bucket for i in range(BUCKETS)]
        known: list[BucketStats | None] = [
            None if cache is None else cache.get(bucket, start) for start in starts
        ]
        first = next((i for i, stats in enumerate(known) if stats is None), BUCKETS)
        fresh = _read_buckets(tx, starts[first], bucket, BUCKETS - first) if first < BUCKETS else []
        for offset, stats in enumerate(fresh):
            index = first + offset
            known[index] = stats
            if cache is not None:
                cache.put(bucket, starts[index], stats, at)
        stats_list = [s for s in known if s is not None]
        per_minute = 60.0 / bucket
        depth_now = tx.fetch_one("health_queue") or {}
        depth = _depth(
            int(depth_now.get("depth") or 0),
            [s.enqueued for s in stats_list],
            [s.finished for s in stats_list],
        )
        series = [
            Series("parts surfaced", "per minute", [s.surfaced * per_minute for s in stats_list]),
            Series("failures", "per minute", [s.failures * per_minute for s in stats_list]),
            Series("enqueue to surfaced p50", "seconds", [s.p50 for s in stats_list]),
            Series("enqueue to surfaced p95", "seconds", [s.p95 for s in stats_list]),
            Series("enqueue to surfaced p99", "seconds", [s.p99 for s in stats_list]),
            Series("queue depth", "deliveries", [float(d) for d in depth]),
        ]
        return Charts(window, since, bucket, series)

    return unit


def _read_buckets(tx: Tx, since: float, bucket: float, count: int) -> list[BucketStats]:
    """The last ``count`` buckets of the grid, from ``since`` on (indexed range reads)."""
    params = {"since": since, "bucket": bucket}
    surfaced = _buckets(tx.fetch_all("console_chart_surfaced", params), count)
    failures = _buckets(tx.fetch_all("console_chart_failures", params), count)
    enqueued = _buckets(tx.fetch_all("console_chart_enqueued", params), count)
    finished = _buckets(tx.fetch_all("console_chart_finished", params), count)
    latencies: list[list[float]] = [[] for _ in range(count)]
    for r in tx.fetch_all("console_chart_latency", {"since": since}):
        index = min(count - 1, int((float(r["finished_at"]) - since) / bucket))
        latencies[index].append(float(r["seconds"]))
    return [
        BucketStats(
            surfaced[i],
            failures[i],
            enqueued[i],
            finished[i],
            _pct(latencies[i], 50),
            _pct(latencies[i], 95),
            _pct(latencies[i], 99),
        )
        for i in range(count)
    ]


def _buckets(rows: list[dict[str, Any]], count: int) -> list[float]:
    counts = [0.0] * count
    for r in rows:
        index = int(r["b"])
        if 0 <= index < count:
            counts[index] += float(r["n"])
        elif index >= count:  # a row stamped in the future (clock skew): the newest bucket
            counts[count - 1] += float(r["n"])
    return counts


def _depth(now_depth: int, enqueued: list[float], finished: list[float]) -> list[int]:
    """Queue depth at the end of each bucket, walking back from the depth now.

    depth(end of bucket i) = depth now - enqueued after it + finished after it. Deliveries
    parked as ``unknown`` or requeued by an operator make this an estimate (they leave or
    re-enter the queue without a finish time of their own).
    """
    depth = [0] * BUCKETS
    current = float(now_depth)
    for index in range(BUCKETS - 1, -1, -1):
        depth[index] = max(0, round(current))
        current = current - enqueued[index] + finished[index]
    return depth


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(0, math.ceil(q / 100.0 * len(ordered)) - 1)
    return round(ordered[rank], 3)
