-- name: applied_migrations
SELECT version FROM relaybox_migrations ORDER BY version;

-- name: record_migration
INSERT INTO relaybox_migrations (version, name, applied_at) VALUES (:version, :name, :now);

-- name: schema_version
SELECT max(version) AS version FROM relaybox_migrations;
