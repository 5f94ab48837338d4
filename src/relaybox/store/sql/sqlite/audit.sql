-- The failure audit log (spec C3): one row per failure of any job, queried by the operator
-- questions "which jobs failed in the last hour?", "all from one chat / stage / channel?",
-- "what payload triggered this?". Times are Unix epoch seconds.

-- name: insert_failure
INSERT INTO job_failures (
    queue, job_id, stage, channel, thread_id, resource_id, correlation_id,
    error_type, message, traceback, attempt, terminal, worker_id,
    payload, payload_kind, payload_size, payload_sha256, payload_truncated, payload_ref,
    created_at)
VALUES (
    :queue, :job_id, :stage, :channel, :thread_id, :resource_id, :correlation_id,
    :error_type, :message, :traceback, :attempt, :terminal, :worker_id,
    :payload, :payload_kind, :payload_size, :payload_sha256, :payload_truncated, :payload_ref,
    :created_at)
RETURNING id;

-- name: failure_by_id
SELECT * FROM job_failures WHERE id = :id;

-- name: list_failures
-- Newest first. Every filter is optional (NULL = any). The time filter is written as a range
-- (no ":since IS NULL OR"), so SQLite can use job_failures_created for it.
SELECT * FROM job_failures
WHERE created_at >= coalesce(:since, -1e308)
  AND (:queue IS NULL OR queue = :queue)
  AND (:job_id IS NULL OR job_id = :job_id)
  AND (:stage IS NULL OR stage = :stage)
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:resource_id IS NULL OR resource_id = :resource_id)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:error_type IS NULL OR error_type = :error_type)
  AND (:terminal IS NULL OR terminal = :terminal)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: group_failures
-- "Are all failures from one chat / queue / stage / channel / user / error type?"
SELECT * FROM (
    SELECT CASE :by
               WHEN 'queue' THEN queue
               WHEN 'stage' THEN stage
               WHEN 'channel' THEN channel
               WHEN 'thread' THEN thread_id
               WHEN 'resource' THEN resource_id
               WHEN 'error' THEN error_type
           END AS key,
           count(*) AS failures,
           count(DISTINCT queue || ':' || coalesce(job_id, '')) AS jobs,
           min(created_at) AS first_at,
           max(created_at) AS last_at
    FROM job_failures
    WHERE created_at >= coalesce(:since, -1e308)  -- a range: the created_at index applies
      AND (:queue IS NULL OR queue = :queue)
      AND (:job_id IS NULL OR job_id = :job_id)
      AND (:stage IS NULL OR stage = :stage)
      AND (:channel IS NULL OR channel = :channel)
      AND (:thread_id IS NULL OR thread_id = :thread_id)
      AND (:resource_id IS NULL OR resource_id = :resource_id)
      AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
      AND (:error_type IS NULL OR error_type = :error_type)
      AND (:terminal IS NULL OR terminal = :terminal)
    GROUP BY 1
) g
ORDER BY failures DESC, key IS NULL, key
LIMIT :limit;
