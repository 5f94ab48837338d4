-- Fewer writes per acknowledged part (issue 15; measured in docs/performance.md).
--
-- 1. delivery_parts is no longer written after enqueue: a part's outcome, transport message id
--    and send time are read from the append-only attempt row that acknowledged it (query
--    parts_of_delivery). The columns stay for parts acknowledged before this migration.
--
-- 2. delivery_attempts loses its foreign key. The check ran a trigger and a key-share lock of
--    the delivery row for every attempt inserted (~5 µs of server CPU per part), to protect an
--    invariant the engine keeps anyway: attempts are appended only by the worker holding the
--    delivery (fenced) or by an operator action on an existing one. What the key also did,
--    deleting a delivery's attempts with it, a statement trigger keeps doing: it fires on
--    DELETE FROM deliveries (retention), never on the hot path.
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_delivery_id_fkey;

CREATE FUNCTION relaybox_forget_attempts_of_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivery_attempts a USING gone WHERE a.delivery_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_forget_attempts AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION relaybox_forget_attempts_of_deleted();

-- 3. delivery_attempts is append-only and filled in time order, so its started_at index (read
--    by retention, "older than", and the console's recent-activity counts, "since") can be a
--    BRIN index: a few pages of block ranges instead of a B-tree entry added with every attempt
--    row, i.e. with every acknowledged part. (SQLite has no BRIN; it keeps its B-tree.)
DROP INDEX IF EXISTS delivery_attempts_started;
CREATE INDEX delivery_attempts_started ON delivery_attempts USING brin (started_at);
