-- Timeline sources for `relaybox trace`: everything that carries one correlation id.

-- name: trace_correlation_of_delivery
SELECT correlation_id FROM deliveries WHERE id = :id;

-- name: trace_correlation_of_inbound
SELECT correlation_id FROM inbound_messages WHERE id = :id;

-- name: trace_correlation_of_task
SELECT correlation_id FROM tasks WHERE id = :id;

-- name: trace_correlation_known
SELECT 1 AS found WHERE
    EXISTS (SELECT 1 FROM inbound_messages WHERE correlation_id = :correlation_id)
    OR EXISTS (SELECT 1 FROM deliveries WHERE correlation_id = :correlation_id)
    OR EXISTS (SELECT 1 FROM job_failures WHERE correlation_id = :correlation_id)
    OR EXISTS (SELECT 1 FROM step_events WHERE correlation_id = :correlation_id)
    OR EXISTS (SELECT 1 FROM tasks WHERE correlation_id = :correlation_id);

-- name: trace_inbound
SELECT * FROM inbound_messages WHERE correlation_id = :correlation_id ORDER BY id;

-- name: trace_deliveries
SELECT * FROM deliveries WHERE correlation_id = :correlation_id ORDER BY id;

-- name: trace_attempts
SELECT * FROM delivery_attempts
WHERE delivery_id IN (SELECT id FROM deliveries WHERE correlation_id = :correlation_id)
ORDER BY id;

-- name: trace_failures
SELECT * FROM job_failures WHERE correlation_id = :correlation_id ORDER BY id;

-- name: trace_delivery_events
SELECT * FROM delivery_events WHERE correlation_id = :correlation_id ORDER BY id;
