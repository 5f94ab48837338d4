-- Idempotent agent steps (spec C5). Every state change of a step is one guarded write here,
-- fenced by (id, lease_epoch): a run whose lease was taken over changes nothing.
--
--   (new) --claim--> running --outcome--> succeeded | failed | timed_out
--                      |  \--retryable error / safe timeout--> pending --claim--> running
--                      \--lease lapsed: retry-safe --> running (next claim)
--                                       otherwise  --> needs_reconciliation --operator--> ...

-- name: insert_step
INSERT INTO steps (
    resource_id, step_id, tool, intent_hash, intent_json, idempotency_key, correlation_id,
    status, retry_safe, lease_owner, lease_expires_at, created_at, updated_at)
VALUES (
    :resource_id, :step_id, :tool, :intent_hash, :intent_json, :idempotency_key, :correlation_id,
    'running', :retry_safe, :owner, :lease_until, :now, :now)
ON CONFLICT (resource_id, step_id) DO NOTHING
RETURNING *;

-- name: lock_step
-- SQLite: BEGIN IMMEDIATE already serialises writers, so a plain read is a locked read.
SELECT * FROM steps WHERE resource_id = :resource_id AND step_id = :step_id;

-- name: step_by_pk
SELECT * FROM steps WHERE id = :id;

-- name: step_by_key
SELECT * FROM steps WHERE resource_id = :resource_id AND step_id = :step_id;

-- name: reclaim_step
-- Run a step again with the same intent and key: after a retryable error, a retry-safe
-- crash or timeout.
UPDATE steps
SET status = 'running', lease_owner = :owner, lease_epoch = lease_epoch + 1,
    lease_expires_at = :lease_until, attempts = attempts + 1, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch
RETURNING *;

-- name: restart_step
-- Start a step afresh: its stored outcome expired, or the caller replaced it (new intent).
UPDATE steps
SET generation = :generation, tool = :tool, intent_hash = :intent_hash,
    intent_json = :intent_json, idempotency_key = :idempotency_key,
    correlation_id = :correlation_id, status = 'running', retry_safe = :retry_safe,
    attempts = 1, lease_owner = :owner, lease_epoch = lease_epoch + 1,
    lease_expires_at = :lease_until, result_json = NULL, error_type = NULL,
    error_message = NULL, reply_delivery_ids = NULL, created_at = :now, updated_at = :now,
    finished_at = NULL, expires_at = NULL
WHERE id = :id AND lease_epoch = :epoch
RETURNING *;

-- name: renew_step_lease
UPDATE steps SET lease_expires_at = :lease_until
WHERE id = :id AND lease_epoch = :epoch AND status = 'running';

-- name: finish_step
-- Store the outcome. A step flagged for reconciliation while its (slow) run was still going
-- is settled by that same run, as long as nobody claimed it since (same epoch).
UPDATE steps
SET status = :status, result_json = :result_json, error_type = :error_type,
    error_message = :error_message, reply_delivery_ids = :reply_delivery_ids,
    lease_owner = NULL, lease_expires_at = NULL, finished_at = :now, updated_at = :now,
    expires_at = :expires_at
WHERE id = :id AND lease_epoch = :epoch AND status IN ('running', 'needs_reconciliation')
RETURNING *;

-- name: set_step_replies
UPDATE steps SET reply_delivery_ids = :ids WHERE id = :id;

-- name: release_step
-- A retryable error (or a timeout of a retry-safe step): no outcome stored, run again later.
UPDATE steps
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
    error_type = :error_type, error_message = :error_message, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'running';

-- name: lapse_step_lease
-- The run was interrupted (task cancelled): let the next run apply the crash policy now
-- instead of waiting for the lease to run out.
UPDATE steps SET lease_expires_at = :now, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'running';

-- name: flag_step_for_reconciliation
UPDATE steps
SET status = 'needs_reconciliation', lease_owner = NULL, updated_at = :now,
    error_type = :error_type, error_message = :error_message
WHERE id = :id AND lease_epoch = :epoch AND status = 'running'
RETURNING *;

-- name: resolve_step
-- Operator: settle a step that needs reconciliation (or whose unsafe run lapsed).
UPDATE steps
SET status = :status, result_json = :result_json, error_type = :error_type,
    error_message = :error_message, lease_owner = NULL, lease_expires_at = NULL,
    lease_epoch = lease_epoch + 1, finished_at = :finished_at, updated_at = :now,
    expires_at = :expires_at
WHERE id = :id AND (status = 'needs_reconciliation'
    OR (status = 'running' AND lease_expires_at < :now AND retry_safe = 0))
RETURNING *;

-- name: insert_step_event
INSERT INTO step_events (
    step_pk, resource_id, step_id, correlation_id, event, attempt, worker, at, detail)
VALUES (
    :step_pk, :resource_id, :step_id, :correlation_id, :event, :attempt, :worker, :now, :detail);

-- name: events_of_step
SELECT * FROM step_events WHERE step_pk = :step_pk ORDER BY id;

-- name: step_events_by_correlation
-- For `relaybox trace`: every step event caused by one inbound message, with its tool.
SELECT e.*, s.tool FROM step_events e JOIN steps s ON s.id = e.step_pk
WHERE e.correlation_id = :correlation_id
ORDER BY e.id;

-- name: list_steps
-- :stalled = 1 lists steps needing an operator: flagged, or running unsafe with a lapsed lease.
SELECT * FROM steps
WHERE (:status IS NULL OR status = :status)
  AND (:resource_id IS NULL OR resource_id = :resource_id)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:stalled = 0 OR status = 'needs_reconciliation'
       OR (status = 'running' AND lease_expires_at < :now AND retry_safe = 0))
ORDER BY id DESC
LIMIT :limit;

-- name: count_expired_steps
SELECT count(*) AS n FROM steps WHERE expires_at <= :now;

-- name: prune_expired_steps
-- Retention: forget outcomes past their expiry, a batch at a time (events go with them).
DELETE FROM steps
WHERE id IN (SELECT id FROM steps WHERE expires_at <= :now ORDER BY expires_at LIMIT :limit);
