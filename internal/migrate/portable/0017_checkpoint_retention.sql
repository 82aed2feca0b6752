-- Checkpoint retention (issue 17, audit/retention.go). Portable: TEXT and
-- BIGINT only. kept says why a checkpoint outlives the retention horizon
-- (it was handed to a tenant in a feed, a receipt or a proof, or a witness
-- cosigned it); NULL checkpoints older than the horizon are pruned, except
-- the latest of each hour. signed_at is what the horizon is measured on.
ALTER TABLE audit_checkpoints ADD COLUMN kept TEXT;
CREATE INDEX audit_checkpoints_signed_at ON audit_checkpoints(signed_at);
