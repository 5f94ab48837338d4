-- Per-user scoped memory (spec C7). Every query of a scope filters by resource_id (and by
-- thread_id where the data is per thread): no query here can return another person's rows,
-- except the admin_* queries, which the operator's admin interface alone uses.

-- name: ensure_working
-- Create an empty document (version 0) so the next statement has a row to lock.
INSERT INTO memory_working (resource_id, thread_id, document, version, created_at, updated_at)
VALUES (:resource_id, :thread_id, '{}', 0, :now, :now)
ON CONFLICT (resource_id, thread_id) DO NOTHING;

-- name: lock_working
-- SQLite: BEGIN IMMEDIATE already serialises writers, so a plain read is a locked read.
SELECT document, version, updated_at FROM memory_working
WHERE resource_id = :resource_id AND thread_id = :thread_id;

-- name: get_working
SELECT document, version, updated_at FROM memory_working
WHERE resource_id = :resource_id AND thread_id = :thread_id;

-- name: write_working
-- Compare-and-swap: only the version the writer read may be replaced.
UPDATE memory_working
SET document = :document, version = version + 1, updated_at = :now
WHERE resource_id = :resource_id AND thread_id = :thread_id AND version = :version
RETURNING version, updated_at;

-- name: insert_note
INSERT INTO memory_notes (resource_id, thread_id, note, metadata, created_at)
VALUES (:resource_id, :thread_id, :note, :metadata, :now)
RETURNING *;

-- name: recent_notes
SELECT * FROM memory_notes WHERE resource_id = :resource_id ORDER BY id DESC LIMIT :limit;

-- name: insert_message
INSERT INTO memory_messages (resource_id, thread_id, role, content, content_type, metadata,
                             created_at)
VALUES (:resource_id, :thread_id, :role, :content, :content_type, :metadata, :now)
RETURNING *;

-- name: insert_turn_message
-- An entry written by a turn: only while that attempt still holds the turn (fenced by its
-- lease epoch), tagged with the turn and attempt so a later attempt can replace it.
INSERT INTO memory_messages (resource_id, thread_id, role, content, content_type, metadata,
                             turn_id, attempt, created_at)
SELECT :resource_id, :thread_id, :role, :content, :content_type, :metadata, id, attempts, :now
FROM turns
WHERE id = :turn_id AND lease_epoch = :epoch AND status = 'running'
  AND resource_id = :resource_id AND thread_id = :thread_id
RETURNING *;

-- name: pop_message
-- Remove and return the latest entry of one person's thread.
DELETE FROM memory_messages
WHERE id = (SELECT max(id) FROM memory_messages
            WHERE resource_id = :resource_id AND thread_id = :thread_id)
  AND resource_id = :resource_id AND thread_id = :thread_id
RETURNING *;

-- name: clear_messages
DELETE FROM memory_messages WHERE resource_id = :resource_id AND thread_id = :thread_id;

-- name: recent_messages
SELECT * FROM memory_messages
WHERE resource_id = :resource_id AND thread_id = :thread_id
ORDER BY id DESC LIMIT :limit;

-- name: messages_between
SELECT * FROM memory_messages
WHERE resource_id = :resource_id AND thread_id = :thread_id
  AND created_at >= :since AND created_at < :until
ORDER BY created_at, id LIMIT :limit;

-- name: admin_resources
-- Operator only: which people have memory, with how much.
SELECT resource_id, sum(documents) AS documents, sum(notes) AS notes,
       sum(messages) AS messages, max(last_at) AS last_at
FROM (
    SELECT resource_id, count(*) AS documents, 0 AS notes, 0 AS messages,
           max(updated_at) AS last_at
    FROM memory_working WHERE version > 0 GROUP BY resource_id
    UNION ALL
    SELECT resource_id, 0, count(*), 0, max(created_at) FROM memory_notes GROUP BY resource_id
    UNION ALL
    SELECT resource_id, 0, 0, count(*), max(created_at) FROM memory_messages GROUP BY resource_id
) AS per_table
GROUP BY resource_id
ORDER BY last_at DESC
LIMIT :limit;

-- name: admin_working_of_resource
SELECT thread_id, document, version, updated_at FROM memory_working
WHERE resource_id = :resource_id AND version > 0
ORDER BY thread_id;

-- name: admin_threads_of_resource
SELECT thread_id, count(*) AS messages, max(created_at) AS last_at FROM memory_messages
WHERE resource_id = :resource_id
GROUP BY thread_id
ORDER BY last_at DESC;

-- name: admin_forget_working
DELETE FROM memory_working WHERE resource_id = :resource_id;

-- name: admin_forget_notes
DELETE FROM memory_notes WHERE resource_id = :resource_id;

-- name: admin_forget_messages
DELETE FROM memory_messages WHERE resource_id = :resource_id;
