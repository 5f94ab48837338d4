"""What one acknowledged part costs the PostgreSQL server, statement variant by variant.

``python -m benchmarks.ack_statement`` (not part of the suite: a profile, for docs/performance.md).
Each variant gets a fresh schema with 2,000 queued 4-part replies, claims them (batches of
128) and records their 8,000 parts in batches of 64 (one transaction each, as the worker's ack
batcher does), all on one connection. Measured: CPU of its server backend (from /proc), split
into claims and acknowledgements, and of this process, per part; variants interleaved, the
lowest of the rounds kept (the machine's load only ever adds):

* ``json``: the acknowledgement statement before issue 15: a JSON array parsed with
  ``jsonb_to_recordset``, the cursor moved, ``delivery_parts`` updated with the outcome and the
  attempt row appended; ``delivery_attempts`` with its foreign key;
* ``json, parts immutable``: the same without the ``delivery_parts`` update;
* ``arrays (text)``: today's statement, arrays formatted as text;
* ``arrays (binary), foreign key``: today's statement and binding, key put back;
* ``arrays (binary)``: what relaybox runs now (no key, BRIN on ``started_at``: migration 0011);
* the same with one of 0011's index changes undone.

The first four variants run on 0011's schema with the key put back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from benchmarks.common import cpu_seconds, fresh_store
from benchmarks.seed import enqueue_bulk, requests
from relaybox.models import Delivery
from relaybox.outbox import transitions as tr
from relaybox.store import open_store
from relaybox.store.postgres import PostgresTx
from relaybox.store.queries import load_queries, to_pyformat

REPLIES = 2000
BATCH = 64

_JSON_ACK = """
WITH ack AS (
    SELECT * FROM jsonb_to_recordset(:acks::jsonb) AS a(
        id bigint, epoch integer, part_index integer, part_outcome text,
        part_message_id text, attempt integer, outcome text, transport_message_id text,
        guid text, worker_id text, started_at double precision, latency_ms double precision,
        error text, correlation_id text)
), moved AS (
    UPDATE deliveries d
    SET start_index = ack.part_index + 1, in_flight_index = NULL,
        status = CASE WHEN ack.part_index + 1 >= d.part_count THEN 'delivered' ELSE d.status END,
        finished_at = CASE WHEN ack.part_index + 1 >= d.part_count THEN :now
                           ELSE d.finished_at END,
        lease_owner = CASE WHEN ack.part_index + 1 >= d.part_count THEN NULL
                           ELSE d.lease_owner END,
        lease_expires_at = CASE WHEN ack.part_index + 1 >= d.part_count THEN NULL
                                ELSE d.lease_expires_at END,
        last_error = NULL, updated_at = :now
    FROM ack
    WHERE d.id = ack.id AND d.lease_epoch = ack.epoch
      AND d.status = 'sending' AND d.start_index = ack.part_index
    RETURNING d.id
){marked}, logged AS (
    INSERT INTO delivery_attempts (
        delivery_id, attempt, part_index, guid, worker_id, started_at, latency_ms,
        outcome, error, transport_message_id, correlation_id)
    SELECT ack.id, ack.attempt, ack.part_index, ack.guid, ack.worker_id, ack.started_at,
           ack.latency_ms, ack.outcome,
           CASE WHEN moved.id IS NULL THEN 'lease lost: cursor not advanced' ELSE ack.error END,
           ack.transport_message_id, ack.correlation_id
    FROM ack LEFT JOIN moved ON moved.id = ack.id
)
SELECT id FROM moved
"""
_MARKED = """, marked AS (
    UPDATE delivery_parts p
    SET outcome = ack.part_outcome, transport_message_id = ack.part_message_id, sent_at = :now
    FROM ack JOIN moved ON moved.id = ack.id
    WHERE p.delivery_id = ack.id AND p.part_index = ack.part_index
)"""
_ADD_KEY = (
    "ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_delivery_id_fkey"
    " FOREIGN KEY (delivery_id) REFERENCES deliveries (id) ON DELETE CASCADE"
)

Record = Callable[[psycopg.Connection[Any], list[tr.SentPart]], None]


def _json_variant(update_parts: bool) -> Record:
    sql = to_pyformat(_JSON_ACK.format(marked=_MARKED if update_parts else ""))

    def record(conn: psycopg.Connection[Any], sent: list[tr.SentPart]) -> None:
        acks = [
            {**s.attempt.params(), "id": s.lease.delivery_id, "epoch": s.lease.epoch,
             "part_index": s.part_index, "part_outcome": s.outcome,
             "part_message_id": s.message_id}
            for s in sent
        ]  # fmt: skip
        conn.execute(sql, {"acks": json.dumps(acks), "now": time.time()}).fetchall()

    return record


def _arrays_variant(binary: bool) -> Record:
    queries = dict(load_queries("postgres", to_pyformat))
    if not binary:
        queries["record_sent_batch"] = queries["record_sent_batch"].replace(")b::", ")s::")

    def record(conn: psycopg.Connection[Any], sent: list[tr.SentPart]) -> None:
        tr.record_sent_many(sent)(PostgresTx(conn, queries))

    return record


def _sent(claimed: list[Delivery], part: int) -> list[tr.SentPart]:
    now = time.time()
    return [
        tr.SentPart(
            tr.Lease(d.id, d.lease_epoch), part, "surfaced", f"m{d.id}-{part}",
            tr.AttemptRecord(d.id, 1, "bench", now, "surfaced", d.correlation_id, part,
                             d.parts[part].guid, 0.1, None, f"m{d.id}-{part}"),
            last=part == 3,
        )
        for d in claimed
    ]  # fmt: skip


def measure_variant(record: Record, setup: str = "") -> dict[str, float]:
    """Claim every reply (batches of 128) and record its 4 parts; CPU per part of each side."""
    with fresh_store("postgres") as bench:
        store = open_store(bench.url)
        try:
            enqueue_bulk(store, requests(REPLIES, REPLIES), chunk=REPLIES)
        finally:
            store.close()
        with psycopg.connect(bench.url, autocommit=True, row_factory=dict_row) as conn:
            if setup:
                conn.execute(setup)
            conn.execute("ANALYZE")
            backend = int(conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])  # type: ignore[index]
            tx = PostgresTx(conn, load_queries("postgres", to_pyformat))
            server, client = cpu_seconds(backend), time.process_time()
            claimed: list[Delivery] = []
            while True:
                with conn.transaction():
                    batch = tr.claim("bench", ["bench"], 128, 600)(tx)
                if not batch:
                    break
                claimed += batch
            claim_server = cpu_seconds(backend) - server
            for part in range(4):
                for start in range(0, len(claimed), BATCH):
                    sent = _sent(claimed[start : start + BATCH], part)
                    with conn.transaction():
                        record(conn, sent)
            server, client = cpu_seconds(backend) - server, time.process_time() - client
            done = conn.execute(
                "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'"
            ).fetchone()
            if done is None or done["n"] != REPLIES:
                raise RuntimeError("not every delivery was recorded as delivered")
    parts = REPLIES * 4
    return {
        "server_us_per_part": round(server * 1e6 / parts, 1),
        "claim_server_us_per_part": round(claim_server * 1e6 / parts, 1),
        "ack_server_us_per_part": round((server - claim_server) * 1e6 / parts, 1),
        "client_us_per_part": round(client * 1e6 / parts, 1),
    }


VARIANTS: list[tuple[str, Record, str]] = [
    ("json (before issue 15), foreign key", _json_variant(True), _ADD_KEY),
    ("json, parts immutable, foreign key", _json_variant(False), _ADD_KEY),
    ("arrays (text), foreign key", _arrays_variant(False), _ADD_KEY),
    ("arrays (binary), foreign key", _arrays_variant(True), _ADD_KEY),
    ("arrays (binary), no foreign key (now)", _arrays_variant(True), ""),
    (
        "now + B-tree on attempts' started_at (before)",
        _arrays_variant(True),
        "DROP INDEX delivery_attempts_started;"
        " CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at)",
    ),
]


def measure(rounds: int = 2) -> list[dict[str, Any]]:
    """Every variant, ``rounds`` times interleaved (the machine's load drifts)."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in VARIANTS}
    for _ in range(rounds):
        for name, record, setup in VARIANTS:
            samples[name].append(measure_variant(record, setup))
    return [
        {
            "variant": name,
            **{
                key: min(s[key] for s in runs)
                for key in (
                    "server_us_per_part",
                    "claim_server_us_per_part",
                    "ack_server_us_per_part",
                    "client_us_per_part",
                )
            },
            "runs": runs,
        }
        for name, runs in samples.items()
    ]


if __name__ == "__main__":
    for row in measure():
        print(
            f"{row['variant']:42s} server {row['server_us_per_part']:5.1f} µs/part (claim"
            f" {row['claim_server_us_per_part']:4.1f}, acks {row['ack_server_us_per_part']:4.1f})"
            f"  client {row['client_us_per_part']:5.1f} µs/part"
        )
