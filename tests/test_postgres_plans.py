"""Plans of the worker's hot statements stay linear whatever the planner statistics say.

Statistics are a snapshot: an ANALYZE (by hand, or autovacuum's) right after a burst of
enqueues records that almost no delivery is 'sending'. A statement that lets the planner start
from "the few 'sending' rows" then compares every acknowledgement with every delivery in
flight (seen in the throughput benchmark: 1.7 s for one ack batch of 672 with 3,488 in
flight). These tests take exactly that snapshot, put hundreds of deliveries in flight and read
the executed plans, generic (a prepared statement after warm-up) and custom, with the planner
free to choose and with joins limited to nested loops (which plan the planner picks from two
that it estimates alike is a coin toss; in the benchmark it was the nested loop): no plan node
may produce more rows, over all its loops, than a few times the table and the batch together.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from _outbox_helpers import acked_part, fast_config
from relaybox.models import Delivery
from relaybox.outbox import transitions as tr
from relaybox.outbox.enqueue import EnqueueUnit, build_request
from relaybox.store import Store, open_store
from relaybox.store.postgres import PostgresTx
from relaybox.store.queries import load_queries, query_texts, to_pyformat

CHANNEL = fast_config().channel("mem")
REPLIES = 1200  # one per thread
IN_FLIGHT = 900
ACKED = 600
_PARAM = re.compile(r"(?<![:\w]):([a-zA-Z_]\w*)")


@pytest.fixture
def stale_store(pg_url: str) -> Iterator[tuple[Store, list[Delivery]]]:
    """Statistics taken while nothing was in flight; then IN_FLIGHT deliveries claimed."""
    store = open_store(pg_url)
    try:
        units = [
            EnqueueUnit(
                build_request(
                    CHANNEL, thread_id=f"t{i}", recipient="u", parts=["a", "b"], reply_key=f"k{i}"
                )
            )
            for i in range(REPLIES)
        ]
        store.run_sync(lambda tx: [unit(tx) for unit in units])
        store.run_sync(lambda tx: tx.execute_script("ANALYZE deliveries"))
        claimed: list[Delivery] = []
        while len(claimed) < IN_FLIGHT:
            claimed += store.run_sync(tr.claim("w", ["mem"], 500, lease_seconds=60))
        yield store, claimed
    finally:
        store.close()


MODES = [
    pytest.param(("force_generic_plan", True), id="generic"),
    pytest.param(("force_custom_plan", True), id="custom"),
    pytest.param(("force_generic_plan", False), id="generic-nestloop"),
    pytest.param(("force_custom_plan", False), id="custom-nestloop"),
]


def _executed_plan(
    url: str, name: str, params: dict[str, Any], mode: tuple[str, bool]
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of query ``name`` as a prepared statement, in ``plan_cache_mode``
    ``mode[0]``, with hash and merge joins allowed (``mode[1]``) or only nested loops."""
    text = query_texts("postgres")[name][1]
    order: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    prepared = _PARAM.sub(placeholder, text)
    args = sql.SQL(", ").join(sql.Literal(params[p]) for p in order)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET plan_cache_mode = {mode[0]}")
        if not mode[1]:
            conn.execute("SET enable_hashjoin = off")
            conn.execute("SET enable_mergejoin = off")
        conn.execute("BEGIN")
        conn.execute(sql.SQL("PREPARE hot AS {}").format(sql.SQL(prepared)))
        explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot({})").format(args)
        row = conn.execute(explain).fetchone()
        conn.execute("ROLLBACK")
    assert row is not None
    plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return dict(plan[0]["Plan"])


def _largest_output(node: dict[str, Any]) -> tuple[float, str]:
    """The plan node producing the most rows over all its loops, and its description."""
    own = float(node.get("Actual Rows", 0)) * float(node.get("Actual Loops", 1))
    best = (own, f"{node['Node Type']} {node.get('Relation Name', '')}".strip())
    for child in node.get("Plans", []):
        best = max(best, _largest_output(child))
    return best


def _assert_linear(
    url: str, name: str, params: dict[str, Any], mode: tuple[str, bool], *, batch: int
) -> None:
    """No node of the executed plan produces more than 3x (table + batch) rows in all."""
    rows, where = _largest_output(_executed_plan(url, name, params, mode))
    assert rows <= 3 * (REPLIES + batch), f"{where} produced {rows:,.0f} rows ({mode})"


def _ack_params(claimed: list[Delivery]) -> dict[str, Any]:
    sent = [acked_part(d, 0, last=False) for d in claimed[:ACKED]]
    return tr._ack_arrays(sent, time.time())


@pytest.mark.parametrize("mode", MODES)
def test_ack_batch_plan_is_driven_by_the_acks(
    pg_url: str, stale_store: tuple[Store, list[Delivery]], mode: tuple[str, bool]
) -> None:
    _store, claimed = stale_store
    _assert_linear(pg_url, "record_sent_batch", _ack_params(claimed), mode, batch=ACKED)


@pytest.mark.parametrize("mode", MODES)
def test_lease_renewal_plan_is_driven_by_the_leases(
    pg_url: str, stale_store: tuple[Store, list[Delivery]], mode: tuple[str, bool]
) -> None:
    _store, claimed = stale_store
    leases = json.dumps([[d.id, d.lease_epoch] for d in claimed])
    params = {"leases": leases, "lease_until": time.time() + 60}
    _assert_linear(pg_url, "renew_leases", params, mode, batch=IN_FLIGHT)


def test_claim_scan_is_planned_without_bitmap_scans_and_resets_the_setting(pg_url: str) -> None:
    """The claim's scan walks deliveries_ready in claim order (docs: claim_scan_in_index_order).

    A bitmap scan of every active delivery plus a sort looked cheaper to the planner after a
    few thousand replies (26 ms per claim against 1.6 ms); the scan is therefore planned with
    bitmap scans off, and the setting is back to the server's default for whatever the same
    transaction runs next (other units of the same group commit).
    """
    store = open_store(pg_url)
    try:
        units = [
            EnqueueUnit(
                build_request(
                    CHANNEL, thread_id=f"t{i}", recipient="u", parts=["a"], reply_key=f"s{i}"
                )
            )
            for i in range(50)
        ]
        store.run_sync(lambda tx: [unit(tx) for unit in units])
    finally:
        store.close()
    plans: list[str] = []
    with psycopg.connect(pg_url, autocommit=True, row_factory=dict_row) as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")  # its plans reach this client as LOG notices
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET auto_explain.log_settings = on")  # non-default planner settings
        conn.execute("SET client_min_messages = log")
        conn.execute("BEGIN")
        claimed = tr.claim("w", ["mem"], 10, 60)(
            PostgresTx(conn, load_queries("postgres", to_pyformat))
        )
        after = conn.execute("SHOW enable_bitmapscan").fetchone()
        conn.execute("ROLLBACK")
    assert len(claimed) == 10
    [scan] = [p for p in plans if "claimable_heads" not in p and "heads of their thread" in p]
    assert "enable_bitmapscan = 'off'" in scan
    assert "deliveries_ready" in scan and "Bitmap" not in scan
    others = [p for p in plans if "Claim, step 2" in p]
    assert others and all("enable_bitmapscan" not in p for p in others)
    assert after is not None and after["enable_bitmapscan"] == "on"
