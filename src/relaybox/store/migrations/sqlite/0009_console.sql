-- Operator console (relaybox serve): indexes for its list and chart queries.
-- The deliveries list filtered by status, newest first, without sorting the status's rows.
CREATE INDEX deliveries_status_id ON deliveries (status, id);
-- Charts (enqueued per bucket, queue depth over time) and the list's time filter. created_at
-- never changes after enqueue, so the worker's updates never touch this index.
CREATE INDEX deliveries_created ON deliveries (created_at);
