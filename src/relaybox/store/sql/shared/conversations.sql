-- New conversations per day per sending line (spec C1); see outbox/conversations.py.

-- name: conversation_known
-- The channel has written to this thread before, or the user wrote to it first.
SELECT 1 AS known FROM channel_conversations WHERE channel = :channel AND thread_id = :thread_id
UNION ALL
SELECT 1 AS known FROM inbound_messages WHERE thread_id = :thread_id AND channel = :channel
LIMIT 1;

-- name: remember_conversation
INSERT INTO channel_conversations (channel, thread_id, started_at)
VALUES (:channel, :thread_id, :now)
ON CONFLICT (channel, thread_id) DO NOTHING;

-- name: open_daily_starts
INSERT INTO channel_daily_starts (channel, day, started)
VALUES (:channel, :day, 0)
ON CONFLICT (channel, day) DO NOTHING;

-- name: take_daily_start
-- Guarded: only while the day's count is below the limit (atomic under concurrent workers).
UPDATE channel_daily_starts SET started = started + 1
WHERE channel = :channel AND day = :day AND started < :limit
RETURNING started;

-- name: daily_starts
SELECT day, started FROM channel_daily_starts WHERE channel = :channel ORDER BY day DESC LIMIT :days;
