-- The operator console (relaybox serve): overview, deliveries list, charts, change feed.
-- Every query here is a read; each is served by an index (see migrations/*/0009_console.sql).

-- name: console_active_by_channel
-- Deliveries waiting for a worker or an operator, per channel and status, and the oldest.
SELECT channel, status, count(*) AS n, min(created_at) AS oldest_created_at
FROM deliveries
WHERE status IN ('queued', 'sending', 'unknown')
GROUP BY channel, status;

-- name: console_finished_by_channel
-- Deliveries that ended since :since, per channel and status (the partial index's own terms;
-- without statistics SQLite would rather walk a status index over every delivered row).
SELECT channel, status, count(*) AS n
FROM deliveries INDEXED BY deliveries_finished
WHERE status IN ('delivered', 'failed', 'expired', 'cancelled') AND finished_at >= :since
GROUP BY channel, status;

-- name: console_failures_by_channel
SELECT coalesce(channel, '') AS channel, count(*) AS n
FROM job_failures WHERE created_at >= :since
GROUP BY coalesce(channel, '');

-- name: console_paused_channels
-- Channels waiting out a rate limit or an unavailable transport (released with a delay).
SELECT channel, count(*) AS n, max(available_at) AS until
FROM deliveries
WHERE status IN ('queued', 'sending') AND status = 'queued' AND available_at > :now
  AND (last_error LIKE 'rate\_limited:%' ESCAPE '\' OR last_error LIKE 'unavailable:%')
GROUP BY channel;

-- name: console_deliveries
-- The deliveries list, newest first, a page at a time (keyset: ids below :before_id, which
-- is the largest id there can be for the first page, so it is always an index range). The
-- console_deliveries_by_* variants below lead with the filter whose index serves them best.
SELECT * FROM deliveries
WHERE (:status IS NULL OR status = :status)
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: console_deliveries_by_status
SELECT * FROM deliveries INDEXED BY deliveries_status_id
WHERE status = :status
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: console_deliveries_by_thread
SELECT * FROM deliveries INDEXED BY deliveries_thread
WHERE thread_id = :thread_id
  AND (:status IS NULL OR status = :status)
  AND (:channel IS NULL OR channel = :channel)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: console_deliveries_by_correlation
SELECT * FROM deliveries INDEXED BY deliveries_correlation
WHERE correlation_id = :correlation_id
  AND (:status IS NULL OR status = :status)
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: console_count_by_status
-- How many deliveries of one status match a filter (the preview of a bulk action).
SELECT count(*) AS n FROM deliveries INDEXED BY deliveries_status_id
WHERE status = :status
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until);

-- name: console_ids_by_status
-- The next batch of a bulk action: ids of one status matching a filter, below :before_id.
SELECT id FROM deliveries INDEXED BY deliveries_status_id
WHERE status = :status
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: console_chart_surfaced
-- Parts surfaced (or recognised as duplicates) per bucket of :bucket seconds since :since.
SELECT CAST((started_at - :since) / :bucket AS INTEGER) AS b, count(*) AS n
FROM delivery_attempts
WHERE started_at >= :since AND outcome IN ('surfaced', 'duplicate')
GROUP BY b;

-- name: console_chart_failures
SELECT CAST((created_at - :since) / :bucket AS INTEGER) AS b, count(*) AS n
FROM job_failures WHERE created_at >= :since
GROUP BY b;

-- name: console_chart_enqueued
SELECT CAST((created_at - :since) / :bucket AS INTEGER) AS b, count(*) AS n
FROM deliveries WHERE created_at >= :since
GROUP BY b;

-- name: console_chart_finished
SELECT CAST((finished_at - :since) / :bucket AS INTEGER) AS b, count(*) AS n
FROM deliveries INDEXED BY deliveries_finished
WHERE status IN ('delivered', 'failed', 'expired', 'cancelled') AND finished_at >= :since
GROUP BY b;

-- name: console_chart_latency
-- Enqueue-to-surfaced time of the replies delivered since :since (percentiles in Python).
SELECT finished_at, finished_at - created_at AS seconds
FROM deliveries INDEXED BY deliveries_finished
WHERE status IN ('delivered', 'failed', 'expired', 'cancelled') AND finished_at >= :since
  AND status = 'delivered';

-- name: console_change_marks
-- The change feed's fingerprint: newest row of each table an operator watches (primary keys,
-- so each max is one index probe) and the number of active deliveries.
SELECT (SELECT max(id) FROM deliveries) AS deliveries,
       (SELECT max(id) FROM delivery_attempts) AS attempts,
       (SELECT max(id) FROM job_failures) AS failures,
       (SELECT max(id) FROM inbound_messages) AS inbound,
       (SELECT count(*) FROM deliveries
         WHERE status IN ('queued', 'sending', 'unknown')) AS active,
       (SELECT max(updated_at) FROM deliveries
         WHERE status IN ('queued', 'sending', 'unknown')) AS active_updated;
