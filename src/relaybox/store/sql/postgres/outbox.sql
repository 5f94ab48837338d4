-- The durable outbox (spec C1). Times are Unix epoch seconds.
-- Every write a worker makes while holding a delivery is fenced by (id, lease_epoch):
-- once another worker has claimed the delivery, the old worker's writes change nothing.

-- name: insert_delivery
-- pg_notify wakes listening workers (worker/notifier.py) when this transaction commits; it is
-- discarded if the enqueue rolls back. The payload is the channel name.
WITH inserted AS (
    INSERT INTO deliveries (
        reply_key, content_hash, channel, thread_id, recipient, resource_id, correlation_id,
        status, part_count, max_attempts, created_at, updated_at, available_at, expires_at,
        trace_context)
    VALUES (
        :reply_key, :content_hash, :channel, :thread_id, :recipient, :resource_id,
        :correlation_id, 'queued', :part_count, :max_attempts, :now, :now, :now, :expires_at,
        :trace_context)
    ON CONFLICT (reply_key) DO NOTHING
    RETURNING *)
SELECT inserted.*, pg_notify('relaybox_deliveries', inserted.channel) AS woke_workers
FROM inserted;

-- name: insert_part
INSERT INTO delivery_parts (delivery_id, part_index, guid, body)
VALUES (:delivery_id, :part_index, :guid, :body);

-- name: insert_deliveries
-- Bulk enqueue (outbox/enqueue.py EnqueueManyUnit): many replies in one statement, bound as
-- arrays, one element per reply. Ids are drawn in list order (ORDER BY ord), so replies of one
-- thread keep their order. A reply key that exists (or comes earlier in the list) inserts
-- nothing; the caller looks it up. One pg_notify per channel wakes listening workers at commit.
WITH reply AS (
    SELECT *
    FROM unnest(:reply_keys::text[], :content_hashes::text[], :channels::text[],
                :thread_ids::text[], :recipients::text[], :resource_ids::text[],
                :correlation_ids::text[], :part_counts::integer[], :max_attempts::integer[],
                :expires_at::double precision[])
      WITH ORDINALITY AS r(reply_key, content_hash, channel, thread_id, recipient, resource_id,
                           correlation_id, part_count, max_attempts, expires_at, ord)
), inserted AS (
    INSERT INTO deliveries (
        reply_key, content_hash, channel, thread_id, recipient, resource_id, correlation_id,
        status, part_count, max_attempts, created_at, updated_at, available_at, expires_at)
    SELECT reply_key, content_hash, channel, thread_id, recipient, resource_id, correlation_id,
           'queued', part_count, max_attempts, :now, :now, :now, expires_at
    FROM reply
    ORDER BY ord
    ON CONFLICT (reply_key) DO NOTHING
    RETURNING *
), woke AS (
    SELECT count(pg_notify('relaybox_deliveries', channel)) AS n
    FROM (SELECT DISTINCT channel FROM inserted) AS c
)
SELECT inserted.*, woke.n AS woke_workers FROM inserted CROSS JOIN woke;

-- name: insert_parts
-- The parts of many deliveries in one statement (bulk enqueue), bound as arrays.
INSERT INTO delivery_parts (delivery_id, part_index, guid, body)
SELECT * FROM unnest(:delivery_ids::bigint[], :part_indexes::integer[], :guids::text[],
                     :bodies::text[]);

-- name: delivery_by_id
SELECT * FROM deliveries WHERE id = :id;

-- name: delivery_by_reply_key
SELECT * FROM deliveries WHERE reply_key = :reply_key;

-- name: parts_of_delivery
-- A part's outcome, transport message id and send time are those of the latest attempt that
-- acknowledged it, for parts before the cursor: delivery_parts is not written after enqueue
-- (migration 0011). Parts acknowledged before 0011 keep the values stored in their own row.
SELECT p.delivery_id, p.part_index, p.guid, p.body,
       coalesce(p.outcome, replace(a.outcome, 'reconciled_', '')) AS outcome,
       coalesce(p.transport_message_id, a.transport_message_id) AS transport_message_id,
       coalesce(p.sent_at, a.started_at + coalesce(a.latency_ms, 0) / 1000.0) AS sent_at
FROM delivery_parts p
JOIN deliveries d ON d.id = p.delivery_id
LEFT JOIN delivery_attempts a ON a.id = (
    SELECT max(x.id) FROM delivery_attempts x
    WHERE x.delivery_id = p.delivery_id AND x.part_index = p.part_index
      AND p.part_index < d.start_index
      AND x.outcome IN ('surfaced', 'duplicate', 'reconciled_surfaced', 'reconciled_duplicate')
      AND (x.error IS NULL OR x.outcome IN ('reconciled_surfaced', 'reconciled_duplicate')))
WHERE p.delivery_id = :delivery_id
ORDER BY p.part_index;

-- name: attempts_of_delivery
SELECT * FROM delivery_attempts WHERE delivery_id = :delivery_id ORDER BY id;

-- name: list_deliveries
SELECT * FROM deliveries
WHERE (:status::text IS NULL OR status = :status)
  AND (:thread_id::text IS NULL OR thread_id = :thread_id)
  AND (:channel::text IS NULL OR channel = :channel)
ORDER BY id DESC
LIMIT :limit;

-- name: supersede_queued_in_thread
-- A newer reply makes queued replies of the same thread that have not started stale.
UPDATE deliveries
SET status = 'cancelled', finished_at = :now, updated_at = :now,
    last_error = 'superseded by delivery ' || :superseded_by::text
WHERE channel = :channel AND thread_id = :thread_id
  AND status = 'queued' AND start_index = 0 AND in_flight_index IS NULL
  AND id < :superseded_by
RETURNING id;

-- name: claimable_heads
-- Claim, step 1 of 2: up to :limit deliveries that are heads of their thread (no older active
-- delivery in the same channel and thread, and no other delivery of the thread being sent under
-- a live lease), and a transaction-level advisory lock on each one's thread. A thread another
-- claimer has locked is skipped, like a row under SKIP LOCKED. The lock key is (1919251576,
-- hashtext(channel/thread)); a hash collision only makes two threads take turns.
-- A 'sending' delivery whose lease lapsed (its worker died) is claimed again.
-- A worker claims only the channels it has transports for (:channels).
-- Both head conditions are one NOT EXISTS, so that each candidate costs one probe of its own
-- thread in deliveries_thread_active. (As two, the planner, expecting few 'sending' rows,
-- materialised every 'sending' delivery and compared each candidate with all of them: 25 ms
-- per claim of 128 with 512 in flight, growing with the number in flight; now about 1 ms.)
-- The OFFSET 0 inside NOT EXISTS keeps that probe a per-candidate index lookup: without it
-- the planner may turn it into a hash anti-join that reads every active delivery per claim
-- (6 ms of a 10 ms claim of 256 with 16,000 active; it grows with the backlog).
-- The lock is tried on the heads in claim order until :limit are locked (the volatile lock
-- call stays outside the subquery, so only real heads are locked): workers claiming at the
-- same moment take the next free heads instead of coming back empty-handed.
SELECT head.id
FROM (
    SELECT d.id, d.channel, d.thread_id
    FROM deliveries d
    WHERE d.status IN ('queued', 'sending')
      AND d.channel = ANY(:channels)
      AND d.available_at <= :now
      AND (d.status = 'queued' OR d.lease_expires_at < :now)
      AND NOT EXISTS (  -- one probe of the thread's active deliveries (thread_active index)
          SELECT 1 FROM deliveries e
          WHERE e.channel = d.channel AND e.thread_id = d.thread_id
            AND e.status IN ('queued', 'sending') AND e.id <> d.id
            AND (e.id < d.id OR (e.status = 'sending' AND e.lease_expires_at >= :now))
          OFFSET 0)  -- stays a per-candidate probe (see above)
    ORDER BY d.available_at, d.id
    OFFSET 0  -- a fence: the planner must not evaluate the lock call inside, on non-heads
) AS head
WHERE pg_try_advisory_xact_lock(1919251576, hashtext(head.channel || '/' || head.thread_id))
LIMIT :limit;

-- name: claim_scan_in_index_order
-- Run before claimable_heads (outbox/transitions.py _scan_for_heads), reset right after by
-- claim_scan_planner_defaults. The scan must walk deliveries_ready in claim order and stop at
-- its limit; the planner, which cannot see that limit past the thread locks (the fence above),
-- sometimes estimates a bitmap scan of every active delivery plus a sort as cheaper. After a
-- few thousand replies (their dead index entries stay until a vacuum) that was a bitmap over
-- 83,000 entries and a sort of 4,000 heads on every claim: 26 ms against 1.6 ms for the walk
-- (tests/test_postgres_plans.py). SET LOCAL ends with the transaction, or the unit's savepoint.
SET LOCAL enable_bitmapscan = off;

-- name: claim_scan_planner_defaults
SET LOCAL enable_bitmapscan TO DEFAULT;

-- name: claimable_heads_among
-- Claim, step 1 of 2, among the given candidate ids instead of a scan: the deliveries that
-- became their thread's head when this worker delivered the one before (record_sent_batch
-- returns them; worker/worker.py claims them at once). The same head conditions and thread
-- locks as claimable_heads, at a probe per candidate however many deliveries are in flight:
-- the scan walks past every delivery in flight and every one queued behind it.
SELECT head.id
FROM (
    SELECT d.id, d.channel, d.thread_id
    FROM deliveries d
    WHERE d.id = ANY(:ids::bigint[])
      AND d.status IN ('queued', 'sending')
      AND d.channel = ANY(:channels)
      AND d.available_at <= :now
      AND (d.status = 'queued' OR d.lease_expires_at < :now)
      AND NOT EXISTS (  -- one probe of the thread's active deliveries (thread_active index)
          SELECT 1 FROM deliveries e
          WHERE e.channel = d.channel AND e.thread_id = d.thread_id
            AND e.status IN ('queued', 'sending') AND e.id <> d.id
            AND (e.id < d.id OR (e.status = 'sending' AND e.lease_expires_at >= :now))
          OFFSET 0)
    ORDER BY d.available_at, d.id
    OFFSET 0  -- a fence, as in claimable_heads
) AS head
WHERE pg_try_advisory_xact_lock(1919251576, hashtext(head.channel || '/' || head.thread_id))
LIMIT :limit;

-- name: claim_deliveries
-- Claim, step 2 of 2: re-check the heads picked in step 1 and take them. Under READ COMMITTED
-- this statement reads a snapshot taken after the thread locks were granted, so it sees every
-- claim committed by the lock's previous holder; one snapshot for both steps would let two
-- claimers each see their own head (e.g. when enqueues commit out of id order) and put two
-- deliveries of one thread in flight.
UPDATE deliveries
SET status = 'sending',
    lease_owner = :worker_id,
    lease_epoch = lease_epoch + 1,
    lease_expires_at = :lease_until,
    attempts = attempts + 1,
    updated_at = :now
WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.id = ANY(:ids)
      AND d.status IN ('queued', 'sending')
      AND d.available_at <= :now
      AND (d.status = 'queued' OR d.lease_expires_at < :now)
      AND NOT EXISTS (  -- one probe of the thread's active deliveries (thread_active index)
          SELECT 1 FROM deliveries e
          WHERE e.channel = d.channel AND e.thread_id = d.thread_id
            AND e.status IN ('queued', 'sending') AND e.id <> d.id
            AND (e.id < d.id OR (e.status = 'sending' AND e.lease_expires_at >= :now))
          OFFSET 0)  -- stays a per-candidate probe (see above)
    FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: parts_of_deliveries
-- Every part of the given deliveries (the caller skips those before each cursor): an index
-- probe per delivery, whatever the size of the tables.
SELECT * FROM delivery_parts
WHERE delivery_id = ANY(:ids)
ORDER BY delivery_id, part_index;

-- name: renew_leases
-- Extend many leases in one statement; :leases is a JSON array of [id, epoch] pairs. Returns
-- the deliveries whose lease is still this worker's. Only join conditions, as in
-- record_sent_batch (the expected status comes with each lease), so that statistics saying few
-- rows are 'sending' never make the planner start from those rows.
-- (MATERIALIZED keeps the planner from folding the constant back into a condition of its own.)
WITH l AS MATERIALIZED (
    SELECT (v ->> 0)::bigint AS id, (v ->> 1)::integer AS epoch, 'sending' AS sending
    FROM jsonb_array_elements(:leases::jsonb) AS v)
UPDATE deliveries d SET lease_expires_at = :lease_until
FROM l
WHERE d.id = l.id AND d.lease_epoch = l.epoch AND d.status = l.sending
RETURNING d.id;

-- name: mark_send_started
UPDATE deliveries SET in_flight_index = :part_index, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'sending' AND start_index = :part_index;

-- name: record_sent_batch
-- Parts were acknowledged: for each, move its delivery's resume cursor past it (fenced like
-- every worker write) and append the attempt row, all in one round trip. The attempt row is
-- the part's only record of its outcome (delivery_parts is not written after enqueue). The
-- acks come as parallel arrays, one element per ack and at most one ack per delivery (unnest
-- reads them without parsing text). Returns the deliveries whose cursor moved and, for each
-- one this ack delivered, the next queued delivery of its thread (next_id: now the thread's
-- head, which the worker claims without a scan). An ack whose lease moved on changes no cursor
-- and is not returned; its attempt row (the send happened) is written by the caller, in the
-- same transaction, marked "lease lost" (outbox/transitions.py record_sent_many): that rare
-- case is not worth a join of acks with moved rows in every batch, which the planner, sure
-- from its estimates that both are tiny, may run as a nested loop of every ack with every row.
-- MATERIALIZED: the constant 'sending' stays a column of ack (see below).
WITH ack AS MATERIALIZED (
    SELECT *
    FROM unnest(:ids::bigint[], :epochs::integer[], :part_indexes::integer[],
                :attempts::integer[], :outcomes::text[], :message_ids::text[], :guids::text[],
                :worker_ids::text[], :started_at::double precision[],
                :latency_ms::double precision[], :errors::text[], :correlation_ids::text[])
      AS a(id, epoch, part_index, attempt, outcome, transport_message_id, guid, worker_id,
           started_at, latency_ms, error, correlation_id)
      CROSS JOIN (VALUES ('sending')) AS fence(sending)  -- the status an acked delivery has
), moved AS (
    UPDATE deliveries d
    SET start_index = ack.part_index + 1,
        in_flight_index = NULL,
        status = CASE WHEN ack.part_index + 1 >= d.part_count THEN 'delivered' ELSE d.status END,
        finished_at = CASE WHEN ack.part_index + 1 >= d.part_count THEN :now
                           ELSE d.finished_at END,
        lease_owner = CASE WHEN ack.part_index + 1 >= d.part_count THEN NULL
                           ELSE d.lease_owner END,
        lease_expires_at = CASE WHEN ack.part_index + 1 >= d.part_count THEN NULL
                                ELSE d.lease_expires_at END,
        last_error = NULL,
        updated_at = :now
    FROM ack
    -- Only join conditions here, no condition on deliveries alone: the plan is then driven by
    -- the acks (a primary-key probe each, or a hash of a small table), never by the 'sending'
    -- rows. With `d.status = 'sending'` written as a condition of its own, statistics taken
    -- while few rows were 'sending' (an ANALYZE, by hand or by autovacuum, right after a burst
    -- of enqueues) made the planner start from the rows it expected to be few: a nested loop
    -- that compared every ack with every delivery in flight, 1.7 s for one batch of 672 acks
    -- with 3,488 in flight instead of 2-7 ms (tests/test_postgres_plans.py).
    WHERE d.id = ack.id AND d.lease_epoch = ack.epoch AND d.start_index = ack.part_index
      AND d.status = ack.sending
    RETURNING d.id,
        CASE WHEN ack.part_index + 1 >= d.part_count THEN (
            SELECT min(e.id) FROM deliveries e
            WHERE e.channel = d.channel AND e.thread_id = d.thread_id
              AND e.status = 'queued' AND e.id > d.id)
        END AS next_id,
        ack.attempt, ack.part_index, ack.guid, ack.worker_id, ack.started_at, ack.latency_ms,
        ack.outcome, ack.error, ack.transport_message_id, ack.correlation_id
), logged AS (
    INSERT INTO delivery_attempts (
        delivery_id, attempt, part_index, guid, worker_id, started_at, latency_ms,
        outcome, error, transport_message_id, correlation_id)
    SELECT id, attempt, part_index, guid, worker_id, started_at, latency_ms,
           outcome, error, transport_message_id, correlation_id
    FROM moved
)
SELECT id, next_id FROM moved;

-- name: insert_attempt
INSERT INTO delivery_attempts (
    delivery_id, attempt, part_index, guid, worker_id, started_at, latency_ms,
    outcome, error, transport_message_id, correlation_id)
VALUES (
    :delivery_id, :attempt, :part_index, :guid, :worker_id, :started_at, :latency_ms,
    :outcome, :error, :transport_message_id, :correlation_id);

-- name: release_delivery
-- Give a delivery back to the queue (retry later, wait out a rate limit, shut down).
-- :refund = 1 when the run should not count as an attempt. One row per released delivery;
-- one available now wakes listening workers when the transaction commits.
WITH released AS (
    UPDATE deliveries
    SET status = 'queued',
        lease_owner = NULL,
        lease_expires_at = NULL,
        available_at = :available_at,
        attempts = attempts - :refund,
        in_flight_index = CASE WHEN :clear_in_flight::boolean THEN NULL ELSE in_flight_index END,
        last_error = coalesce(:error::text, last_error),
        updated_at = :now
    WHERE id = :id AND lease_epoch = :epoch AND status = 'sending'
    RETURNING channel, available_at)
SELECT CASE WHEN available_at <= :now THEN pg_notify('relaybox_deliveries', channel) END
FROM released;

-- name: finish_delivery
-- End a run in a final status: failed, expired or unknown.
UPDATE deliveries
SET status = :status,
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = :now,
    last_error = :error,
    updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'sending';

-- name: cancel_delivery
UPDATE deliveries
SET status = 'cancelled', finished_at = :now, updated_at = :now,
    last_error = :reason, lease_owner = NULL, lease_expires_at = NULL
WHERE id = :id AND status IN ('queued', 'sending');

-- name: requeue_delivery
-- Operator action: send a failed, expired or parked delivery again from its cursor.
-- One row if requeued; listening workers are woken when the transaction commits.
WITH requeued AS (
    UPDATE deliveries
    SET status = 'queued', runs_before = runs_before + attempts, attempts = 0,
        available_at = :now, finished_at = NULL,
        start_index = start_index + :skip_parts, in_flight_index = NULL, updated_at = :now,
        last_error = :reason
    WHERE id = :id AND status IN ('failed', 'unknown', 'expired')
    RETURNING channel)
SELECT pg_notify('relaybox_deliveries', channel) FROM requeued;

-- name: expire_stale_queued
-- Replies past their max age are expired rather than sent late.
UPDATE deliveries
SET status = 'expired', finished_at = :now, updated_at = :now,
    last_error = 'expired: older than the channel''s max age before it could be sent'
WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at < :now
RETURNING *;

-- name: finish_requeued_as_delivered
UPDATE deliveries SET status = 'delivered', finished_at = :now, updated_at = :now
WHERE id = :id AND status = 'queued' AND start_index >= part_count;

-- name: insert_delivery_event
-- Who decided what about a delivery (operator actions, give-ups); see outbox/events.py.
INSERT INTO delivery_events (
    delivery_id, correlation_id, at, kind, actor, from_status, to_status, run, detail,
    action_id, action_count)
VALUES (
    :delivery_id, :correlation_id, :at, :kind, :actor, :from_status, :to_status, :run, :detail,
    :action_id, :action_count);

-- name: events_of_delivery
SELECT * FROM delivery_events WHERE delivery_id = :delivery_id ORDER BY id;
