-- Storage settings for the tables a worker writes on every part (performance only; no change
-- of meaning). See docs/performance.md.
--
-- fillfactor leaves room in each page, so that an update which changes no indexed column (the
-- cursor moving within a reply, a lease renewal, a part's outcome) is a HOT update: the new row
-- version stays in its page and none of the table's indexes is touched. That cuts the WAL and
-- the index work of the per-part writes by about half.
ALTER TABLE deliveries SET (fillfactor = 50);
ALTER TABLE delivery_parts SET (fillfactor = 70);

-- A queue table changes fast: analyse it after 2% of its rows changed (default 10%), so the
-- claim is planned with current counts of queued and finished deliveries, and vacuum it after
-- 5% (default 20%), so dead row versions do not pile up between vacuums.
ALTER TABLE deliveries SET (autovacuum_analyze_scale_factor = 0.02,
                            autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE delivery_parts SET (autovacuum_vacuum_scale_factor = 0.05);
