-- Hardening: every operator action and every give-up is an event; run numbers keep counting.

-- Runs of earlier rounds: an operator's retry starts a new round of attempts (attempts = 0,
-- the channel's budget again) but the run number shown in attempts and traces keeps counting
-- (runs_before + attempts).
ALTER TABLE deliveries ADD COLUMN runs_before INTEGER NOT NULL DEFAULT 0;

-- Append-only: one row per decision about a delivery that is not a send (see docs/operator-sql.md).
-- Written in the same transaction as the state change it explains.
CREATE TABLE delivery_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    correlation_id TEXT    NOT NULL,
    at             REAL    NOT NULL,
    kind           TEXT    NOT NULL,  -- retried | resolved | cancelled | gave_up | parked | expired | lease_lost
    actor          TEXT    NOT NULL,  -- who: operator:<user>, console:<user>, or the worker id
    from_status    TEXT,
    to_status      TEXT,
    run            INTEGER,           -- the delivery's run number when it happened
    detail         TEXT,              -- the reason, the error, the operator's note
    action_id      TEXT,              -- shared by every delivery of one (bulk) operator action
    action_count   INTEGER NOT NULL DEFAULT 1  -- how many deliveries that action covered
);
CREATE INDEX delivery_events_delivery ON delivery_events (delivery_id, id);
CREATE INDEX delivery_events_correlation ON delivery_events (correlation_id);
CREATE INDEX delivery_events_at ON delivery_events (at);
