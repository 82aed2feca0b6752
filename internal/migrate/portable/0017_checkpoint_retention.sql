-- Checkpoint retention (issue 17, audit/retention.go). Portable: TEXT and
-- BIGINT only. kept says why a checkpoint outlives the retention horizon
-- (it was handed to a tenant in a feed, a receipt or a proof, or a witness
-- cosigned it); NULL checkpoints older than the horizon are pruned, except
-- the latest of each hour. No index on signed_at: it would cost a page
-- write per checkpoint, and pruning walks the primary key from where it
-- stopped instead.
ALTER TABLE audit_checkpoints ADD COLUMN kept TEXT;
