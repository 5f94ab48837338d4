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

-- 3. deliveries_status_created (status, created_at) goes: every claim and every final status
--    change is an update that cannot be HOT (status changes), and such an update adds an entry
--    to each of the table's indexes. deliveries_status_id (status, id) from 0009 answers every
--    query by status (health's unknown count, listings by status, newest first) and time
--    ranges have deliveries_created / deliveries_finished.
DROP INDEX IF EXISTS deliveries_status_created;
