-- name: applied_migrations
SELECT version FROM relaybox_migrations ORDER BY version;

-- name: record_migration
INSERT INTO relaybox_migrations (version, name, applied_at) VALUES (:version, :name, :now);

-- name: schema_version
SELECT max(version) AS version FROM relaybox_migrations;

-- name: lock_migrations
-- Serialises concurrent migrators: a transaction-level advisory lock ("relaybox" migrations).
SELECT pg_advisory_xact_lock(7311224080) IS NULL AS locked;

-- name: relaybox_schema_present
SELECT to_regclass('relaybox_migrations') IS NOT NULL AS present;
