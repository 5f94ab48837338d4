-- Agent turns (docs/turns.md): one durable unit per inbound message, the store's identity
-- (mixed into reply keys the library derives, so two stores never share a GUID), and history
-- entries keyed by turn and attempt. Times are Unix epoch seconds (DOUBLE PRECISION).

-- One row, written once when the store is created: a random id no other store shares.
CREATE TABLE relaybox_identity (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    store_id   TEXT    NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
INSERT INTO relaybox_identity (id, store_id, created_at)
VALUES (1, replace(gen_random_uuid()::text, '-', ''), extract(epoch FROM clock_timestamp()));

-- One turn per inbound message: who runs it (lease), how often it ran, how it ended.
CREATE TABLE turns (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inbound_id        BIGINT  NOT NULL UNIQUE REFERENCES inbound_messages (id) ON DELETE CASCADE,
    channel           TEXT    NOT NULL,
    thread_id         TEXT    NOT NULL,
    resource_id       TEXT    NOT NULL,
    correlation_id    TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('running', 'pending', 'blocked',
                        'answered', 'no_reply', 'ended', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 1,  -- attempts started (the running one included)
    max_attempts      INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_epoch       INTEGER NOT NULL DEFAULT 1,  -- fencing token, +1 on every claim
    lease_expires_at  DOUBLE PRECISION,
    available_at      DOUBLE PRECISION,            -- pending: resume may take it from here
    blocked_step      TEXT,                        -- blocked: the step an operator must resolve
    reply_delivery_id BIGINT,
    error_type        TEXT,                        -- the last attempt's error
    error_message     TEXT,
    created_at        DOUBLE PRECISION NOT NULL,
    updated_at        DOUBLE PRECISION NOT NULL,
    finished_at       DOUBLE PRECISION
);
CREATE INDEX turns_status ON turns (status, updated_at);
CREATE INDEX turns_correlation ON turns (correlation_id);

-- Append-only journal of every turn: started, retried, in_progress, answered, failed ...
CREATE TABLE turn_events (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    turn_id        BIGINT  NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    correlation_id TEXT    NOT NULL,
    event          TEXT    NOT NULL,
    attempt        INTEGER,
    worker         TEXT,
    at             DOUBLE PRECISION NOT NULL,
    detail         TEXT
);
CREATE INDEX turn_events_turn ON turn_events (turn_id, id);
CREATE INDEX turn_events_correlation ON turn_events (correlation_id, id);

-- History entries: structured content (JSON) besides text, and the turn + attempt that wrote
-- them, so a crashed attempt's entries are replaced by the next attempt's instead of piling up.
ALTER TABLE memory_messages ADD COLUMN content_type TEXT NOT NULL DEFAULT 'text'
    CHECK (content_type IN ('text', 'json'));
ALTER TABLE memory_messages ADD COLUMN turn_id BIGINT;
ALTER TABLE memory_messages ADD COLUMN attempt INTEGER;
CREATE INDEX memory_messages_turn ON memory_messages (turn_id, attempt) WHERE turn_id IS NOT NULL;
