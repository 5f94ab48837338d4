-- Retention (spec C8): delete old history in small batches, one short transaction each.
-- Never touched: deliveries still queued, sending or parked as unknown (nor their attempts),
-- inbound messages whose reply is still one of those, and unanswered inbound messages younger
-- than their own (longer) retention.

-- name: count_prunable_failures
SELECT count(*) AS n FROM job_failures WHERE created_at < :cutoff;

-- name: prune_failures
DELETE FROM job_failures WHERE id IN (
    SELECT id FROM job_failures WHERE created_at < :cutoff ORDER BY id LIMIT :limit);

-- name: count_prunable_attempts
SELECT count(*) AS n FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
WHERE a.started_at < :cutoff AND d.status IN ('delivered', 'failed', 'expired', 'cancelled');

-- name: prune_attempts
DELETE FROM delivery_attempts WHERE id IN (
    SELECT a.id FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
    WHERE a.started_at < :cutoff
      AND d.status IN ('delivered', 'failed', 'expired', 'cancelled')
    ORDER BY a.id LIMIT :limit);

-- name: count_prunable_deliveries
SELECT count(*) AS n FROM deliveries
WHERE status IN ('delivered', 'failed', 'expired', 'cancelled') AND finished_at < :cutoff;

-- name: prune_deliveries
-- Parts and attempts go with their delivery (ON DELETE CASCADE). The status test is repeated
-- outside the subquery so a delivery requeued meanwhile is re-checked and kept.
DELETE FROM deliveries
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status IN ('delivered', 'failed', 'expired', 'cancelled') AND finished_at < :cutoff
    ORDER BY id LIMIT :limit)
  AND status IN ('delivered', 'failed', 'expired', 'cancelled');

-- name: count_prunable_inbound
-- Answered (a reply was delivered) or marked "no reply needed", older than the cutoff. An
-- unanswered message is a gap (`relaybox gaps`) and is kept: see prune_unanswered_inbound.
SELECT count(*) AS n FROM inbound_status s
WHERE s.received_at < :cutoff
  AND (s.status = 'no_reply_needed' OR s.delivered_replies > 0)
  AND NOT EXISTS (
      SELECT 1 FROM deliveries d
      WHERE d.correlation_id = s.correlation_id
        AND d.status IN ('queued', 'sending', 'unknown'));

-- name: prune_inbound
DELETE FROM inbound_messages WHERE id IN (
    SELECT s.id FROM inbound_status s
    WHERE s.received_at < :cutoff
      AND (s.status = 'no_reply_needed' OR s.delivered_replies > 0)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries d
          WHERE d.correlation_id = s.correlation_id
            AND d.status IN ('queued', 'sending', 'unknown'))
    ORDER BY s.id LIMIT :limit);

-- name: count_prunable_unanswered_inbound
-- Unanswered messages (what `relaybox gaps` lists) have a retention of their own, longer by
-- default ([retention] unanswered_inbound_days).
SELECT count(*) AS n FROM inbound_status s
WHERE s.received_at < :cutoff
  AND s.status <> 'no_reply_needed' AND s.delivered_replies = 0
  AND NOT EXISTS (
      SELECT 1 FROM deliveries d
      WHERE d.correlation_id = s.correlation_id
        AND d.status IN ('queued', 'sending', 'unknown'));

-- name: prune_unanswered_inbound
DELETE FROM inbound_messages WHERE id IN (
    SELECT s.id FROM inbound_status s
    WHERE s.received_at < :cutoff
      AND s.status <> 'no_reply_needed' AND s.delivered_replies = 0
      AND NOT EXISTS (
          SELECT 1 FROM deliveries d
          WHERE d.correlation_id = s.correlation_id
            AND d.status IN ('queued', 'sending', 'unknown'))
    ORDER BY s.id LIMIT :limit);
