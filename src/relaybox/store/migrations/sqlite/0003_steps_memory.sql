-- Idempotent agent steps (spec C5) and per-user scoped memory (spec C7).
-- Times are Unix epoch seconds (REAL); read them with datetime(col, 'unixepoch').

-- One row per (resource, step id): the claim, its lease, and the stored outcome.
CREATE TABLE steps (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id        TEXT    NOT NULL,           -- the user the step acts for: keys are per user
    step_id            TEXT    NOT NULL,
    generation         INTEGER NOT NULL DEFAULT 1, -- +1 each time the caller replaces the step
    tool               TEXT    NOT NULL,
    intent_hash        TEXT    NOT NULL,           -- SHA-256 of the canonical intent
    intent_json        TEXT    NOT NULL,           -- canonical intent (capped), for operators
    idempotency_key    TEXT    NOT NULL,           -- given to the body for downstream APIs
    correlation_id     TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('running', 'pending', 'succeeded',
                         'failed', 'timed_out', 'needs_reconciliation')),
    retry_safe         INTEGER NOT NULL,           -- 1: may run again after a crash or timeout
    attempts           INTEGER NOT NULL DEFAULT 1, -- runs of the body started
    lease_owner        TEXT,
    lease_epoch        INTEGER NOT NULL DEFAULT 1, -- fencing token, +1 on every claim
    lease_expires_at   REAL,
    result_json        TEXT,                       -- the outcome of a succeeded step
    error_type         TEXT,                       -- failed / timed_out (or the last retryable error)
    error_message      TEXT,
    reply_delivery_ids TEXT,                       -- JSON list: replies enqueued with the outcome
    created_at         REAL    NOT NULL,
    updated_at         REAL    NOT NULL,
    finished_at        REAL,
    expires_at         REAL,                       -- retention: the outcome is forgotten after this
    UNIQUE (resource_id, step_id)
);
CREATE INDEX steps_status ON steps (status, updated_at);
CREATE INDEX steps_correlation ON steps (correlation_id);
CREATE INDEX steps_expires ON steps (expires_at) WHERE expires_at IS NOT NULL;

-- Append-only journal of every step run: started, replayed, succeeded, failed, timed out...
-- Ordered by id (never by a timestamp alone).
CREATE TABLE step_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    step_pk        INTEGER NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    resource_id    TEXT    NOT NULL,
    step_id        TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    event          TEXT    NOT NULL,
    attempt        INTEGER,
    worker         TEXT,
    at             REAL    NOT NULL,
    detail         TEXT
);
CREATE INDEX step_events_step ON step_events (step_pk, id);
CREATE INDEX step_events_correlation ON step_events (correlation_id, id);

-- Working memory: one versioned JSON object per resource ('' thread) or per resource+thread.
CREATE TABLE memory_working (
    resource_id TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL,  -- '' = the resource's own document; else thread-scoped
    document    TEXT    NOT NULL,  -- a JSON object
    version     INTEGER NOT NULL,  -- +1 on every write (compare-and-swap token)
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (resource_id, thread_id)
);

-- Observational notes about a person (per resource; the thread says where it was observed).
CREATE TABLE memory_notes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL,
    note        TEXT    NOT NULL,
    metadata    TEXT,              -- a JSON object
    created_at  REAL    NOT NULL
);
CREATE INDEX memory_notes_resource ON memory_notes (resource_id, id);

-- Conversation history: per (resource, thread), append-only.
CREATE TABLE memory_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    content     TEXT    NOT NULL,
    metadata    TEXT,              -- a JSON object
    created_at  REAL    NOT NULL
);
CREATE INDEX memory_messages_thread ON memory_messages (resource_id, thread_id, id);
CREATE INDEX memory_messages_time ON memory_messages (resource_id, thread_id, created_at);
