-- name: applied_migrations
SELECT version FROM relaybox_migrations ORDER BY version;

-- name: record_migration
INSERT INTO relaybox_migrations (version, name, applied_at) VALUES (:version, :name, :now);

-- name: schema_version
SELECT max(version) AS version FROM relaybox_migrations;

-- name: lock_migrations
-- Nothing to do: BEGIN IMMEDIATE already serialises concurrent migrators.
SELECT 1 AS locked;

-- name: relaybox_schema_present
SELECT count(*) > 0 AS present FROM sqlite_master
WHERE type = 'table' AND name = 'relaybox_migrations';
