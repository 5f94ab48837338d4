-- The live workers registry (workers/transitions.py, workers/inspect.py).

-- name: register_worker
INSERT INTO workers (id, host, pid, version, channels, concurrency, started_at, last_seen_at,
                     in_flight, channel_state, services, metrics_url)
VALUES (:id, :host, :pid, :version, :channels, :concurrency, :started_at, :now, :in_flight,
        :channel_state, :services, :metrics_url)
ON CONFLICT (id) DO UPDATE SET
    last_seen_at = excluded.last_seen_at,
    in_flight = excluded.in_flight,
    channel_state = excluded.channel_state,
    services = excluded.services,
    metrics_url = excluded.metrics_url;

-- name: heartbeat_worker
UPDATE workers
SET last_seen_at = :now, in_flight = :in_flight, channel_state = :channel_state,
    services = :services
WHERE id = :id;

-- name: deregister_worker
DELETE FROM workers WHERE id = :id;

-- name: forget_dead_workers
DELETE FROM workers WHERE last_seen_at < :before;

-- name: list_workers
SELECT * FROM workers ORDER BY started_at, id;

-- name: queue_by_channel
-- Active deliveries per channel and status, with the oldest one's enqueue time. Health checks
-- and the store gauges of /metrics read this.
SELECT channel, status, count(*) AS n, min(created_at) AS oldest_created_at
FROM deliveries WHERE status IN ('queued', 'sending')
GROUP BY channel, status;
