-- deliveries_status_created (status, created_at) goes: deliveries_status_id (status, id, from
-- 0009) answers every query by status, and every claim and every final status change (neither
-- can be a HOT update: status is indexed) added an entry to both. It also gave the planner a
-- second way to read "all active deliveries" that the claim's scan could take instead of the
-- ready index: after a run of replies, a bitmap scan of it plus a sort of every active delivery
-- per claim (27 ms instead of 1 ms for a claim of 256, with dead entries of earlier runs that
-- only a vacuum removes). Measured in docs/performance.md (issue 15, third round).
DROP INDEX IF EXISTS deliveries_status_created;
