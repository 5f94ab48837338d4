-- The durable outbox (spec C1). Times are Unix epoch seconds.
-- Every write a worker makes while holding a delivery is fenced by (id, lease_epoch):
-- once another worker has claimed the delivery, the old worker's writes change nothing.

-- name: insert_delivery
INSERT INTO deliveries (
    reply_key, content_hash, channel, thread_id, recipient, resource_id, correlation_id,
    status, part_count, max_attempts, created_at, updated_at, available_at, expires_at,
    trace_context)
VALUES (
    :reply_key, :content_hash, :channel, :thread_id, :recipient, :resource_id, :correlation_id,
    'queued', :part_count, :max_attempts, :now, :now, :now, :expires_at,
        :trace_context)
ON CONFLICT (reply_key) DO NOTHING
RETURNING *;

-- name: insert_part
INSERT INTO delivery_parts (delivery_id, part_index, guid, body)
VALUES (:delivery_id, :part_index, :guid, :body);

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
WHERE (:status IS NULL OR status = :status)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:channel IS NULL OR channel = :channel)
ORDER BY id DESC
LIMIT :limit;

-- name: supersede_queued_in_thread
-- A newer reply makes queued replies of the same thread that have not started stale.
UPDATE deliveries
SET status = 'cancelled', finished_at = :now, updated_at = :now,
    last_error = 'superseded by delivery ' || :superseded_by
WHERE channel = :channel AND thread_id = :thread_id
  AND status = 'queued' AND start_index = 0 AND in_flight_index IS NULL
  AND id < :superseded_by
RETURNING id;

-- name: claimable_heads
-- Claim, step 1 of 2: up to :limit deliveries that are heads of their thread (no older active
-- delivery in the same channel and thread, and no other delivery of the thread being sent under
-- a live lease): that keeps one delivery in flight per thread, in enqueue order.
-- A 'sending' delivery whose lease lapsed (its worker died) is claimed again.
-- A worker claims only the channels it has transports for (:channels).
-- (PostgreSQL also locks each head's thread here; SQLite's BEGIN IMMEDIATE serialises claims.)
-- INDEXED BY: without statistics SQLite would walk every active delivery through the status
-- index and sort them; the ready index yields them in claim order and stops at :limit.
SELECT d.id
FROM deliveries d INDEXED BY deliveries_ready
WHERE d.status IN ('queued', 'sending')
  AND d.channel IN (SELECT value FROM json_each(:channels))
  AND d.available_at <= :now
  AND (d.status = 'queued' OR d.lease_expires_at < :now)
  AND NOT EXISTS (
      SELECT 1 FROM deliveries e
      WHERE e.channel = d.channel AND e.thread_id = d.thread_id
        AND e.status IN ('queued', 'sending') AND e.id < d.id)
  AND NOT EXISTS (
      SELECT 1 FROM deliveries e INDEXED BY deliveries_thread_active
      WHERE e.channel = d.channel AND e.thread_id = d.thread_id
        AND e.status IN ('queued', 'sending')
        AND e.status = 'sending' AND e.lease_expires_at >= :now AND e.id <> d.id)
ORDER BY d.available_at, d.id
LIMIT :limit;

-- name: claimable_heads_among
-- Claim, step 1 of 2, among the given candidate ids instead of a scan: the deliveries that
-- became their thread's head when this worker delivered the one before (next_in_thread;
-- worker/worker.py claims them at once). The same head conditions as claimable_heads, at a
-- probe per candidate however many deliveries are in flight.
SELECT d.id
FROM deliveries d
WHERE d.id IN (SELECT value FROM json_each(:ids))
  AND +d.status IN ('queued', 'sending')  -- unary +: look up by id, not by status
  AND d.channel IN (SELECT value FROM json_each(:channels))
  AND d.available_at <= :now
  AND (d.status = 'queued' OR d.lease_expires_at < :now)
  AND NOT EXISTS (
      SELECT 1 FROM deliveries e
      WHERE e.channel = d.channel AND e.thread_id = d.thread_id
        AND e.status IN ('queued', 'sending') AND e.id < d.id)
  AND NOT EXISTS (
      SELECT 1 FROM deliveries e INDEXED BY deliveries_thread_active
      WHERE e.channel = d.channel AND e.thread_id = d.thread_id
        AND e.status IN ('queued', 'sending')
        AND e.status = 'sending' AND e.lease_expires_at >= :now AND e.id <> d.id)
ORDER BY d.available_at, d.id
LIMIT :limit;

-- name: next_in_thread
-- The next queued delivery of a delivered one's thread: now that thread's head (PostgreSQL's
-- record_sent_batch returns it as next_id).
SELECT min(e.id) AS id
FROM deliveries d
JOIN deliveries e INDEXED BY deliveries_thread_active
  ON e.channel = d.channel AND e.thread_id = d.thread_id
WHERE d.id = :id AND e.status IN ('queued', 'sending') AND e.status = 'queued' AND e.id > d.id;

-- name: claim_deliveries
-- Claim, step 2 of 2: re-check the heads picked in step 1 and take them.
UPDATE deliveries
SET status = 'sending',
    lease_owner = :worker_id,
    lease_epoch = lease_epoch + 1,
    lease_expires_at = :lease_until,
    attempts = attempts + 1,
    updated_at = :now
WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.id IN (SELECT value FROM json_each(:ids))
      AND +d.status IN ('queued', 'sending')  -- unary +: look up by id, not by status
      AND d.available_at <= :now
      AND (d.status = 'queued' OR d.lease_expires_at < :now)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries e
          WHERE e.channel = d.channel AND e.thread_id = d.thread_id
            AND e.status IN ('queued', 'sending') AND e.id < d.id)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries e INDEXED BY deliveries_thread_active
          WHERE e.channel = d.channel AND e.thread_id = d.thread_id
            AND e.status IN ('queued', 'sending')
            AND e.status = 'sending' AND e.lease_expires_at >= :now AND e.id <> d.id))
RETURNING *;

-- name: parts_of_deliveries
-- Every part of the given deliveries (the caller skips those before each cursor): an index
-- probe per delivery, whatever the size of the tables.
SELECT * FROM delivery_parts
WHERE delivery_id IN (SELECT value FROM json_each(:ids))
ORDER BY delivery_id, part_index;

-- name: renew_leases
-- Extend many leases in one statement; :leases is a JSON array of [id, epoch] pairs. Returns
-- the deliveries whose lease is still this worker's.
UPDATE deliveries SET lease_expires_at = :lease_until
FROM (SELECT value ->> 0 AS lease_id, value ->> 1 AS lease_epoch FROM json_each(:leases)) AS l
WHERE deliveries.id = l.lease_id AND deliveries.lease_epoch = l.lease_epoch
  AND +deliveries.status = 'sending'  -- unary +: look each one up by id, not by status
RETURNING deliveries.id;

-- name: mark_send_started
UPDATE deliveries SET in_flight_index = :part_index, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'sending' AND start_index = :part_index;

-- name: advance_cursor
-- The part at :part_index was acknowledged: move the resume cursor past it.
UPDATE deliveries
SET start_index = :part_index + 1,
    in_flight_index = NULL,
    status = CASE WHEN :part_index + 1 >= part_count THEN 'delivered' ELSE status END,
    finished_at = CASE WHEN :part_index + 1 >= part_count THEN :now ELSE finished_at END,
    lease_owner = CASE WHEN :part_index + 1 >= part_count THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN :part_index + 1 >= part_count THEN NULL ELSE lease_expires_at END,
    last_error = NULL,
    updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'sending' AND start_index = :part_index;

-- name: advance_cursor_within
-- advance_cursor for a part that is not the last: the same write, but it leaves status and
-- finished_at alone, so SQLite need not touch the indexes that depend on them (a third of
-- the cost of the write). A last part matches no row here; it takes advance_cursor.
UPDATE deliveries
SET start_index = :part_index + 1,
    in_flight_index = NULL,
    last_error = NULL,
    updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'sending' AND start_index = :part_index
  AND :part_index + 1 < part_count;

-- name: insert_attempt
INSERT INTO delivery_attempts (
    delivery_id, attempt, part_index, guid, worker_id, started_at, latency_ms,
    outcome, error, transport_message_id, correlation_id)
VALUES (
    :delivery_id, :attempt, :part_index, :guid, :worker_id, :started_at, :latency_ms,
    :outcome, :error, :transport_message_id, :correlation_id);

-- name: release_delivery
-- Give a delivery back to the queue (retry later, wait out a rate limit, shut down).
-- :refund = 1 when the run should not count as an attempt.
UPDATE deliveries
SET status = 'queued',
    lease_owner = NULL,
    lease_expires_at = NULL,
    available_at = :available_at,
    attempts = attempts - :refund,
    in_flight_index = CASE WHEN :clear_in_flight THEN NULL ELSE in_flight_index END,
    last_error = coalesce(:error, last_error),
    updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'sending';

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
UPDATE deliveries
SET status = 'queued', runs_before = runs_before + attempts, attempts = 0,
    available_at = :now, finished_at = NULL,
    start_index = start_index + :skip_parts, in_flight_index = NULL, updated_at = :now,
    last_error = :reason
WHERE id = :id AND status IN ('failed', 'unknown', 'expired');

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
