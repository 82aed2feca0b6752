-- Alert lifecycle and what is contained now (issue 13, finding 6).
-- Portable: BIGINT and TEXT only.

-- A resolved alert stays resolved: evidence that arrives for its window
-- afterwards opens a new alert, the next generation of the same base
-- dedup key (rule:group:window), whose own dedup_key is base#generation.
ALTER TABLE alerts ADD COLUMN dedup_base TEXT;
ALTER TABLE alerts ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
UPDATE alerts SET dedup_base = dedup_key;
CREATE INDEX alerts_dedup_base ON alerts(dedup_base, generation);

-- Why a principal is suspended: the alert that suspended it (al_…) or the
-- containment action of security staff (ca_…). Suspensions from before
-- this column name the newest alert that lists them.
ALTER TABLE principals ADD COLUMN suspended_by TEXT;
UPDATE principals SET suspended_by = (
    SELECT a.id FROM alerts a WHERE a.actions LIKE '%suspended ' || principals.id || '%'
    ORDER BY a.created_at DESC, a.id LIMIT 1)
WHERE suspended <> 0;
