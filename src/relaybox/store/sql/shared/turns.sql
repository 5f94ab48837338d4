-- Agent turns (docs/turns.md). Every change of a turn's status is one guarded write here,
-- called from relaybox/turns/transitions.py: fenced by (id, lease_epoch) and by the status it
-- expects, so two attempts can never both move one turn.

-- name: store_identity
SELECT store_id, created_at FROM relaybox_identity WHERE id = 1;

-- name: insert_turn
-- The first delivery of an inbound message creates its turn, already claimed. A concurrent
-- redelivery conflicts on inbound_id and finds the row instead (no check-then-insert).
INSERT INTO turns (inbound_id, channel, thread_id, resource_id, correlation_id, status,
                   attempts, max_attempts, lease_owner, lease_epoch, lease_expires_at,
                   created_at, updated_at)
VALUES (:inbound_id, :channel, :thread_id, :resource_id, :correlation_id, 'running',
        1, :max_attempts, :owner, 1, :lease_until, :now, :now)
ON CONFLICT (inbound_id) DO NOTHING
RETURNING *;

-- name: turn_by_inbound
SELECT * FROM turns WHERE inbound_id = :inbound_id;

-- name: turn_by_id
SELECT * FROM turns WHERE id = :id;

-- name: claim_turn
-- Take a turn whose attempt is over (crashed: lease lapsed; released: pending; blocked on a
-- step an operator has since resolved). Guarded by the epoch and status the caller read: of
-- two concurrent claims exactly one changes the row.
UPDATE turns
SET status = 'running', attempts = attempts + 1, lease_epoch = lease_epoch + 1,
    lease_owner = :owner, lease_expires_at = :lease_until, available_at = NULL,
    blocked_step = NULL, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = :status
  AND (status <> 'running' OR lease_expires_at <= :now)
RETURNING *;

-- name: renew_turn_lease
UPDATE turns SET lease_expires_at = :lease_until
WHERE id = :id AND lease_epoch = :epoch AND status = 'running';

-- name: finish_turn
-- The running attempt ends the turn: answered, no_reply or ended.
UPDATE turns
SET status = :status, reply_delivery_id = :reply_delivery_id, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = :now, finished_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'running'
RETURNING *;

-- name: release_turn
-- The running attempt stops without an answer: pending (run again from available_at),
-- blocked (on a step an operator must resolve) or failed (no attempts left).
UPDATE turns
SET status = :status, lease_owner = NULL, lease_expires_at = NULL,
    available_at = :available_at, blocked_step = :blocked_step, error_type = :error_type,
    error_message = :error_message, updated_at = :now,
    finished_at = CASE WHEN :status = 'failed' THEN :now ELSE NULL END
WHERE id = :id AND lease_epoch = :epoch AND status = 'running'
RETURNING *;

-- name: fail_turn
-- Out of attempts while not running (found crashed, pending or unblocked by a claim).
UPDATE turns
SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, available_at = NULL,
    error_type = :error_type, error_message = :error_message, updated_at = :now,
    finished_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = :status
  AND (status <> 'running' OR lease_expires_at <= :now)
RETURNING *;

-- name: retry_failed_turn
-- An operator gives a failed turn more attempts: it becomes pending, available now.
UPDATE turns
SET status = 'pending', max_attempts = attempts + :more, available_at = :now,
    updated_at = :now, finished_at = NULL
WHERE id = :id AND status = 'failed'
RETURNING *;

-- name: discard_turn_messages
-- A new attempt starts: the history entries of the earlier attempts of this turn go.
DELETE FROM memory_messages WHERE turn_id = :turn_id AND attempt < :attempt;

-- name: step_needs_reconciliation
SELECT id FROM steps
WHERE resource_id = :resource_id AND step_id = :step_id AND status = 'needs_reconciliation';

-- name: insert_turn_event
INSERT INTO turn_events (turn_id, correlation_id, event, attempt, worker, at, detail)
VALUES (:turn_id, :correlation_id, :event, :attempt, :worker, :now, :detail);

-- name: resumable_turns
-- Turns a resume pass may hand to the handler: crashed (lease lapsed for more than the
-- grace period, which leaves the platform's own redelivery the first go), pending and due,
-- or blocked on a step that is no longer waiting for an operator.
SELECT t.* FROM turns t
WHERE (t.status = 'running' AND t.lease_expires_at <= :crashed_before)
   OR (t.status = 'pending' AND t.available_at <= :now)
   OR (t.status = 'blocked' AND NOT EXISTS (
        SELECT 1 FROM steps s
        WHERE s.resource_id = t.resource_id AND s.step_id = t.blocked_step
          AND s.status = 'needs_reconciliation'))
ORDER BY t.id
LIMIT :limit;

-- name: list_turns
SELECT * FROM turns
WHERE (CAST(:status AS TEXT) IS NULL OR status = :status)
  AND (CAST(:resource_id AS TEXT) IS NULL OR resource_id = :resource_id)
ORDER BY id DESC
LIMIT :limit;

-- name: turn_events_of
SELECT * FROM turn_events WHERE turn_id = :turn_id ORDER BY id;

-- name: turn_events_for_correlation
SELECT * FROM turn_events WHERE correlation_id = :correlation_id ORDER BY id;
