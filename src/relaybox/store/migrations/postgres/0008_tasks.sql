-- Agent task contracts (spec C6): the task, its deadlines, its append-only journal.
-- Times are Unix epoch seconds (DOUBLE PRECISION). Idempotent: every statement may run again.
-- The state machine is in src/relaybox/tasks/transitions.py (docs/tasks.md).

CREATE TABLE IF NOT EXISTS tasks (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_key            TEXT    NOT NULL UNIQUE,     -- the caller's key: starting again returns this row
    channel             TEXT    NOT NULL,
    thread_id           TEXT    NOT NULL,
    recipient           TEXT    NOT NULL,
    resource_id         TEXT    NOT NULL,
    correlation_id      TEXT    NOT NULL,
    summary             TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN ('created', 'acked', 'progressing',
                          'late', 'finishing', 'done', 'failed', 'timed_out', 'cancelled')),
    outcome             TEXT    CHECK (outcome IN ('done', 'failed')),  -- what finishing leads to
    ack_within          DOUBLE PRECISION    NOT NULL CHECK (ack_within > 0),
    progress_every      DOUBLE PRECISION    NOT NULL CHECK (progress_every > 0),
    finish_within       DOUBLE PRECISION    NOT NULL CHECK (finish_within > 0),
    liveness_within     DOUBLE PRECISION    NOT NULL CHECK (liveness_within > 0),  -- beats of a running body
    ack_text            TEXT    NOT NULL,            -- rendered at start: sent if the ack is missed
    nudge_text          TEXT    NOT NULL,
    timeout_text        TEXT    NOT NULL,
    interrupted_text    TEXT    NOT NULL,
    hand_back           INTEGER NOT NULL DEFAULT 0,  -- 1: a failure is recorded as an inbound message
    ack_due             DOUBLE PRECISION,                        -- NULL once an ack was surfaced or sent for us
    progress_due        DOUBLE PRECISION,
    finish_due          DOUBLE PRECISION    NOT NULL,
    liveness_due        DOUBLE PRECISION,                        -- set by a running body's beats
    next_due            DOUBLE PRECISION,                        -- min of the dues above; NULL when finishing/ended
    ack_delivery_id     BIGINT,
    acked_at            DOUBLE PRECISION,                        -- when the ack was surfaced (the contract is met)
    auto_acked          INTEGER NOT NULL DEFAULT 0,
    nudges              INTEGER NOT NULL DEFAULT 0,
    result_delivery_id  BIGINT,                     -- the result or failure message: the receipt
    result_hash         TEXT,                        -- SHA-256 of the canonical result parts
    notice_delivery_id  BIGINT,                     -- timeout / interrupted / cancel notice
    error_type          TEXT,
    error               TEXT,
    cancel_reason       TEXT,
    runner              TEXT,                        -- who runs the body (process), if known
    last_progress_at    DOUBLE PRECISION,
    last_seq            INTEGER NOT NULL DEFAULT 0,  -- the journal's last sequence number
    created_at          DOUBLE PRECISION    NOT NULL,
    updated_at          DOUBLE PRECISION    NOT NULL,
    finished_at         DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS tasks_next_due ON tasks (next_due) WHERE next_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_ack_pending ON tasks (ack_delivery_id)
    WHERE acked_at IS NULL AND ack_delivery_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_finishing ON tasks (result_delivery_id) WHERE state = 'finishing';
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, updated_at);
CREATE INDEX IF NOT EXISTS tasks_thread ON tasks (channel, thread_id, id);
CREATE INDEX IF NOT EXISTS tasks_correlation ON tasks (correlation_id);

-- Append-only journal: (task_id, seq) is the order, never a timestamp.
CREATE TABLE IF NOT EXISTS task_events (
    task_id  BIGINT  NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    at       DOUBLE PRECISION    NOT NULL,
    kind     TEXT    NOT NULL,
    actor    TEXT    NOT NULL,                       -- agent | supervisor:<worker> | operator
    payload  JSONB   NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    PRIMARY KEY (task_id, seq)
);
CREATE INDEX IF NOT EXISTS task_events_at ON task_events (at);

-- Which worker supervises task deadlines: one row, a lease with a fencing epoch.
CREATE TABLE IF NOT EXISTS task_supervisor (
    name        TEXT    PRIMARY KEY,
    holder      TEXT,
    lease_until DOUBLE PRECISION    NOT NULL DEFAULT 0,
    epoch       INTEGER NOT NULL DEFAULT 0,
    last_tick   DOUBLE PRECISION
);
INSERT INTO task_supervisor (name) VALUES ('tasks') ON CONFLICT (name) DO NOTHING;
