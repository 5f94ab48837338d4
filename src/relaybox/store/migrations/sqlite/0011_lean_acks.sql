-- Fewer writes per acknowledged part (issue 15; measured in docs/performance.md).
-- delivery_parts is no longer written after enqueue: a part's outcome, transport message id
-- and send time are read from the attempt row that acknowledged it (query parts_of_delivery).
-- PostgreSQL's 0011 also drops the foreign key of delivery_attempts; SQLite keeps it (there the
-- check is one primary-key probe in process, and dropping it would mean rebuilding the table).
-- This step records the version so both stores' schema versions stay in step.
-- As on PostgreSQL, deliveries_status_created goes (deliveries_status_id from 0009 answers
-- every query by status); SQLite maintains it on every status change.
DROP INDEX IF EXISTS deliveries_status_created;
