-- Inbound messages and their replies (spec C4). A message is recorded once per
-- (channel, external_id); its replies are the deliveries that carry its correlation id.

-- name: insert_inbound
INSERT INTO inbound_messages (
    channel, external_id, thread_id, resource_id, body, meta, correlation_id, received_at)
VALUES (
    :channel, :external_id, :thread_id, :resource_id, :body, :meta, :correlation_id, :now)
ON CONFLICT (channel, external_id) DO NOTHING
RETURNING *;

-- name: note_inbound_duplicate
-- The same platform message came in again (webhook retry, replay after a restart).
UPDATE inbound_messages
SET duplicate_count = duplicate_count + 1, last_duplicate_at = :now
WHERE channel = :channel AND external_id = :external_id
RETURNING *;

-- name: inbound_by_id
SELECT * FROM inbound_messages WHERE id = :id;

-- name: inbound_correlation_owner
-- Correlation ids are unique: is this one taken by another message?
SELECT id FROM inbound_messages
WHERE correlation_id = :correlation_id
  AND NOT (channel = :channel AND external_id = :external_id);

-- name: inbound_status_by_id
SELECT * FROM inbound_status WHERE id = :id;

-- name: mark_inbound_reply_enqueued
UPDATE inbound_messages
SET status = 'reply_enqueued', handled_at = coalesce(handled_at, :now)
WHERE id = :id;

-- name: mark_inbound_no_reply
UPDATE inbound_messages
SET status = 'no_reply_needed', handled_at = :now, note = :note
WHERE id = :id AND status = 'received';

-- name: link_delivery_to_inbound
UPDATE deliveries SET inbound_id = :inbound_id WHERE id = :delivery_id;

-- name: list_inbound
SELECT * FROM inbound_status
WHERE (:since IS NULL OR received_at >= :since)
  AND (:channel IS NULL OR channel = :channel)
  AND (:thread_id IS NULL OR thread_id = :thread_id)
  AND (:resource_id IS NULL OR resource_id = :resource_id)
  AND (:state IS NULL OR state = :state)
ORDER BY received_at DESC, id DESC
LIMIT :limit;

-- name: inbound_gaps
-- Silent loss: received before :before, no delivered reply, not marked "no reply needed".
SELECT * FROM inbound_status
WHERE received_at < :before
  AND (:since IS NULL OR received_at >= :since)
  AND status <> 'no_reply_needed'
  AND delivered_replies = 0
ORDER BY received_at, id
LIMIT :limit;
