-- The durable outbox: one row per reply, one per part, one per send attempt.
-- Times are Unix epoch seconds (double precision); read them with to_timestamp(col).

CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reply_key        TEXT    NOT NULL UNIQUE,   -- idempotency key of the enqueue
    content_hash     TEXT    NOT NULL,          -- detects a reply key reused for other content
    channel          TEXT    NOT NULL,
    thread_id        TEXT    NOT NULL,
    recipient        TEXT    NOT NULL,
    resource_id      TEXT    NOT NULL,
    correlation_id   TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN
                       ('queued', 'sending', 'delivered', 'failed', 'unknown', 'expired', 'cancelled')),
    part_count       INTEGER NOT NULL CHECK (part_count > 0),
    start_index      INTEGER NOT NULL DEFAULT 0, -- resume cursor: parts before it are acknowledged
    attempts         INTEGER NOT NULL DEFAULT 0, -- runs started (claims), not counting waits
    max_attempts     INTEGER NOT NULL,
    created_at       DOUBLE PRECISION  NOT NULL,
    updated_at       DOUBLE PRECISION  NOT NULL,
    available_at     DOUBLE PRECISION  NOT NULL,          -- not before: backoff, retry-after
    expires_at       DOUBLE PRECISION,                      -- NULL: never expires
    finished_at      DOUBLE PRECISION,
    lease_owner      TEXT,                      -- worker id holding the lease
    lease_epoch      INTEGER NOT NULL DEFAULT 0, -- fencing token, +1 on every claim
    lease_expires_at DOUBLE PRECISION,
    in_flight_index  INTEGER,                   -- part whose non-deduplicated send began
    last_error       TEXT
);

-- The head of each thread (oldest active delivery) is the only one that may be claimed.
CREATE INDEX deliveries_thread_active ON deliveries (channel, thread_id, id)
    WHERE status IN ('queued', 'sending');
CREATE INDEX deliveries_ready ON deliveries (available_at, id)
    WHERE status IN ('queued', 'sending');
CREATE INDEX deliveries_status_created ON deliveries (status, created_at);
CREATE INDEX deliveries_thread ON deliveries (thread_id, id);
CREATE INDEX deliveries_correlation ON deliveries (correlation_id);

CREATE TABLE delivery_parts (
    delivery_id          BIGINT  NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    part_index           INTEGER NOT NULL,
    guid                 TEXT    NOT NULL UNIQUE, -- stable client GUID, fixed at enqueue
    body                 TEXT    NOT NULL,
    outcome              TEXT,                    -- surfaced | duplicate once acknowledged
    transport_message_id TEXT,
    sent_at              DOUBLE PRECISION,
    PRIMARY KEY (delivery_id, part_index)
);

-- Append-only: one row per send and per decision that ended a run.
CREATE TABLE delivery_attempts (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id          BIGINT  NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt              INTEGER NOT NULL,
    part_index           INTEGER,
    guid                 TEXT,
    worker_id            TEXT    NOT NULL,
    started_at           DOUBLE PRECISION  NOT NULL,
    latency_ms           DOUBLE PRECISION,
    outcome              TEXT    NOT NULL,
    error                TEXT,
    transport_message_id TEXT,
    correlation_id       TEXT    NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at);
