-- Observability (issue 10): the live workers registry, and the trace context of an enqueue.

-- One row per running worker process, written by its registry job (worker/registry.py):
-- inserted at start, refreshed every [worker] heartbeat_seconds, deleted at a clean stop. A
-- worker that died stops refreshing: it counts as dead once last_seen_at is older than
-- [worker] dead_after_seconds, and its row is deleted by the others an hour later.
CREATE TABLE workers (
    id            TEXT    PRIMARY KEY,          -- host:pid:random, as in delivery_attempts
    host          TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    version       TEXT    NOT NULL,             -- relaybox version
    channels      TEXT    NOT NULL,             -- JSON array of the channels it delivers
    concurrency   INTEGER NOT NULL,
    started_at    DOUBLE PRECISION NOT NULL,
    last_seen_at  DOUBLE PRECISION NOT NULL,
    in_flight     INTEGER NOT NULL DEFAULT 0,   -- deliveries held at the last heartbeat
    channel_state TEXT    NOT NULL DEFAULT '{}', -- JSON: per channel, failures in a row, pause
    services      TEXT    NOT NULL DEFAULT '{}', -- JSON: per background service, its health
    metrics_url   TEXT                          -- where its /metrics is served, if it is
);
CREATE INDEX workers_last_seen ON workers (last_seen_at);

-- W3C traceparent of the code that enqueued the reply (OpenTelemetry, when installed), so
-- the worker's send spans join the agent's trace. NULL without tracing.
ALTER TABLE deliveries ADD COLUMN trace_context TEXT;
