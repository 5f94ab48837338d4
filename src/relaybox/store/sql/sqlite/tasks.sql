-- Agent task contracts (spec C6). Every state change is one guarded write, update_task,
-- composed by src/relaybox/tasks/transitions.py on a row it locked first (lock_task):
--
--   created --ack surfaced--> acked --progress--> progressing <--nudge / progress--> late
--   created|acked|progressing|late --result or failure enqueued--> finishing
--   finishing --its delivery surfaced--> done | failed      (not surfaced --> failed)
--   created|acked|progressing|late --finish deadline--> timed_out
--   created|acked|progressing|late --cancel / body stopped beating--> cancelled / failed
--
-- update_task only applies while the row is still in the state and at the journal sequence it
-- was read at, so a write computed from a stale row changes nothing (and the unit fails loudly).

-- name: insert_task
INSERT INTO tasks (
    task_key, channel, thread_id, recipient, resource_id, correlation_id, summary, state,
    ack_within, progress_every, finish_within, liveness_within, ack_text, nudge_text, timeout_text,
    interrupted_text, hand_back, ack_due, progress_due, finish_due, next_due, runner,
    created_at, updated_at)
VALUES (
    :task_key, :channel, :thread_id, :recipient, :resource_id, :correlation_id, :summary,
    'created', :ack_within, :progress_every, :finish_within, :liveness_within, :ack_text, :nudge_text,
    :timeout_text, :interrupted_text, :hand_back, :ack_due, :progress_due, :finish_due,
    :next_due, :runner, :now, :now)
ON CONFLICT (task_key) DO NOTHING
RETURNING *;

-- name: task_by_id
SELECT * FROM tasks WHERE id = :id;

-- name: task_by_key
SELECT * FROM tasks WHERE task_key = :task_key;

-- name: lock_task
-- SQLite: BEGIN IMMEDIATE already serialises writers, so a plain read is a locked read.
SELECT * FROM tasks WHERE id = :id;

-- name: lock_task_or_skip
-- The supervisor's lock: on SQLite the write transaction already holds the database.
SELECT * FROM tasks WHERE id = :id;

-- name: update_task
UPDATE tasks SET
    state = :state, outcome = :outcome, ack_due = :ack_due, progress_due = :progress_due,
    liveness_due = :liveness_due, next_due = :next_due, ack_delivery_id = :ack_delivery_id,
    acked_at = :acked_at, auto_acked = :auto_acked, nudges = :nudges,
    result_delivery_id = :result_delivery_id, result_hash = :result_hash,
    notice_delivery_id = :notice_delivery_id, error_type = :error_type, error = :error,
    cancel_reason = :cancel_reason, runner = :runner, last_progress_at = :last_progress_at,
    last_seq = :last_seq, updated_at = :now, finished_at = :finished_at
WHERE id = :id AND state = :from_state AND last_seq = :from_seq;

-- name: insert_task_event
INSERT INTO task_events (task_id, seq, at, kind, actor, payload)
VALUES (:task_id, :seq, :at, :kind, :actor, :payload);

-- name: take_task_supervision
-- The supervisor lease: kept by its holder, taken over once it lapsed. Fenced by epoch.
UPDATE task_supervisor
   SET holder = :worker_id, lease_until = :lease_until, last_tick = :now,
       epoch = CASE WHEN holder = :worker_id THEN epoch ELSE epoch + 1 END
 WHERE name = 'tasks' AND (holder = :worker_id OR holder IS NULL OR lease_until < :now)
RETURNING epoch;

-- name: release_task_supervision
UPDATE task_supervisor SET lease_until = 0 WHERE name = 'tasks' AND holder = :worker_id;

-- name: task_supervision
SELECT holder, lease_until, epoch, last_tick FROM task_supervisor WHERE name = 'tasks';

-- name: tasks_ack_settled
-- Tasks whose acknowledgement delivery ended: surfaced (the contract's ack is met) or not.
SELECT t.id, d.status AS delivery_status, d.last_error AS delivery_error
  FROM tasks t JOIN deliveries d ON d.id = t.ack_delivery_id
 WHERE t.acked_at IS NULL AND t.ack_delivery_id IS NOT NULL
   AND d.status IN ('delivered', 'failed', 'expired', 'cancelled')
 ORDER BY t.id LIMIT :limit;

-- name: tasks_result_settled
SELECT t.id, d.status AS delivery_status, d.last_error AS delivery_error
  FROM tasks t JOIN deliveries d ON d.id = t.result_delivery_id
 WHERE t.state = 'finishing' AND d.status IN ('delivered', 'failed', 'expired', 'cancelled')
 ORDER BY t.id LIMIT :limit;

-- name: tasks_due
SELECT id FROM tasks WHERE next_due IS NOT NULL AND next_due <= :now
 ORDER BY next_due, id LIMIT :limit;

-- name: delivery_status_of
SELECT status FROM deliveries WHERE id = :id;

-- name: list_tasks
SELECT * FROM tasks
 WHERE (:state IS NULL OR state = :state)
   AND (:thread_id IS NULL OR thread_id = :thread_id)
   AND (:late = 0 OR state = 'late' OR (next_due IS NOT NULL AND next_due <= :now))
   AND (:before_id IS NULL OR id < :before_id)
 ORDER BY id DESC LIMIT :limit;

-- name: task_events_page
SELECT * FROM task_events WHERE task_id = :task_id AND seq > :after_seq
 ORDER BY seq LIMIT :limit;

-- name: task_events_of_correlation
SELECT e.task_id, e.seq, e.at, e.kind, e.actor, e.payload, t.summary FROM task_events e JOIN tasks t ON t.id = e.task_id
 WHERE t.correlation_id = :correlation_id ORDER BY e.task_id, e.seq;

-- name: health_tasks
SELECT
    SUM(CASE WHEN state = 'late' OR (next_due IS NOT NULL AND next_due <= :late_before)
             THEN 1 ELSE 0 END) AS late,
    SUM(CASE WHEN state = 'timed_out' AND finished_at >= :since THEN 1 ELSE 0 END) AS timed_out,
    SUM(CASE WHEN state IN ('created', 'acked', 'progressing', 'late', 'finishing')
             THEN 1 ELSE 0 END) AS open
  FROM tasks
 WHERE state IN ('created', 'acked', 'progressing', 'late', 'finishing')
    OR (state = 'timed_out' AND finished_at >= :since);
