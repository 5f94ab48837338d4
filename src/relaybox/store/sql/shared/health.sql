-- `relaybox health`: a few cheap numbers a probe can alert on.

-- name: health_queue
SELECT count(*) AS depth, min(created_at) AS oldest_created_at
FROM deliveries WHERE status IN ('queued', 'sending');

-- name: health_finished
SELECT status, count(*) AS n FROM deliveries
WHERE status IN ('delivered', 'failed', 'expired', 'cancelled') AND finished_at >= :since
GROUP BY status;

-- name: health_unknown
SELECT count(*) AS n FROM deliveries WHERE status = 'unknown';

-- name: health_failures
SELECT count(*) AS n FROM job_failures WHERE created_at >= :since;

-- name: health_gaps
SELECT count(*) AS n FROM inbound_status
WHERE received_at < :before AND received_at >= :since
  AND status <> 'no_reply_needed' AND delivered_replies = 0;
