-- Failure audit (spec C3), inbound messages and correlation (C4).
-- Times are Unix epoch seconds (double precision); read them with to_timestamp(col).

-- One row per failure of any job: a delivery attempt, an agent run, a tool step, user code.
CREATE TABLE job_failures (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue             TEXT    NOT NULL,          -- 'deliveries', 'agent', 'tools', ...
    job_id            TEXT,                      -- the job's own id (a delivery id, a step id)
    stage             TEXT,                      -- where it broke: 'send', 'reconcile', 'llm', ...
    channel           TEXT,
    thread_id         TEXT,
    resource_id       TEXT,                      -- the user (e.g. the sender address)
    correlation_id    TEXT,
    error_type        TEXT    NOT NULL,
    message           TEXT    NOT NULL,
    traceback         TEXT,
    attempt           INTEGER,
    terminal          BOOLEAN NOT NULL DEFAULT TRUE, -- true: this failure ended the job
    worker_id         TEXT,
    payload           TEXT,                      -- kept for reproduction; cut past the size limit
    payload_kind      TEXT,                      -- json | text | base64
    payload_size      INTEGER,                   -- original size in bytes
    payload_sha256    TEXT,                      -- of the original payload
    payload_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    payload_ref       TEXT,                      -- pointer to where a large blob is kept
    created_at        DOUBLE PRECISION NOT NULL
);
CREATE INDEX job_failures_created ON job_failures (created_at);
CREATE INDEX job_failures_queue ON job_failures (queue, created_at);
CREATE INDEX job_failures_stage ON job_failures (stage, created_at);
CREATE INDEX job_failures_channel ON job_failures (channel, created_at);
CREATE INDEX job_failures_thread ON job_failures (thread_id, created_at);
CREATE INDEX job_failures_resource ON job_failures (resource_id, created_at);
CREATE INDEX job_failures_error_type ON job_failures (error_type, created_at);
CREATE INDEX job_failures_correlation ON job_failures (correlation_id);
CREATE INDEX job_failures_job ON job_failures (queue, job_id);

-- One row per platform message the agent received; (channel, external_id) recognises a
-- webhook retried or replayed after a restart.
CREATE TABLE inbound_messages (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel           TEXT    NOT NULL,
    external_id       TEXT    NOT NULL,          -- the platform's message id
    thread_id         TEXT    NOT NULL,
    resource_id       TEXT    NOT NULL,
    body              TEXT,
    meta              TEXT,                      -- JSON, the caller's own fields
    correlation_id    TEXT    NOT NULL UNIQUE,   -- carried by everything this message causes
    status            TEXT    NOT NULL DEFAULT 'received' CHECK (status IN
                        ('received', 'reply_enqueued', 'no_reply_needed')),
    received_at       DOUBLE PRECISION NOT NULL,
    handled_at        DOUBLE PRECISION,            -- reply enqueued or marked "no reply needed"
    note              TEXT,
    duplicate_count   INTEGER NOT NULL DEFAULT 0, -- how often the same message came in again
    last_duplicate_at DOUBLE PRECISION,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_received ON inbound_messages (received_at);
CREATE INDEX inbound_thread ON inbound_messages (thread_id, received_at);
CREATE INDEX inbound_resource ON inbound_messages (resource_id, received_at);

-- A reply enqueued for an inbound message links back to it (and carries its correlation id).
ALTER TABLE deliveries ADD COLUMN inbound_id BIGINT;
CREATE INDEX deliveries_inbound ON deliveries (inbound_id) WHERE inbound_id IS NOT NULL;
-- Retention and health read finished deliveries by when they finished.
CREATE INDEX deliveries_finished ON deliveries (finished_at)
    WHERE status IN ('delivered', 'failed', 'expired', 'cancelled');

-- What became of each inbound message. Its replies are the deliveries carrying its
-- correlation id. state: received (accepted, no reply yet) | reply_pending | replied (a reply
-- was delivered, none pending or failed) | reply_failed | reply_cancelled | no_reply_needed.
CREATE VIEW inbound_status AS
SELECT s.*,
       CASE
           WHEN s.status = 'no_reply_needed' THEN 'no_reply_needed'
           WHEN s.replies = 0 THEN 'received'
           WHEN s.pending_replies > 0 THEN 'reply_pending'
           WHEN s.failed_replies > 0 THEN 'reply_failed'
           WHEN s.delivered_replies > 0 THEN 'replied'
           ELSE 'reply_cancelled'
       END AS state
FROM (
    SELECT i.id, i.channel, i.external_id, i.thread_id, i.resource_id, i.body, i.meta,
           i.correlation_id, i.status, i.received_at, i.handled_at, i.note,
           i.duplicate_count, i.last_duplicate_at,
           (SELECT count(*) FROM deliveries d
             WHERE d.correlation_id = i.correlation_id) AS replies,
           (SELECT count(*) FROM deliveries d
             WHERE d.correlation_id = i.correlation_id
               AND d.status IN ('queued', 'sending')) AS pending_replies,
           (SELECT count(*) FROM deliveries d
             WHERE d.correlation_id = i.correlation_id AND d.status = 'delivered')
             AS delivered_replies,
           (SELECT count(*) FROM deliveries d
             WHERE d.correlation_id = i.correlation_id
               AND d.status IN ('failed', 'expired', 'unknown')) AS failed_replies,
           (SELECT max(d.finished_at) FROM deliveries d
             WHERE d.correlation_id = i.correlation_id AND d.status = 'delivered')
             AS replied_at
    FROM inbound_messages i
) s;
