-- The log's index by principal, key and source network, for blast-radius
-- reports (audit/index.go). Every column is derived from the entry's body
-- (actor_seq, key_id, and source as 32 hex digits of its 16-byte form so
-- that a network is a range) and is checked against it by the verifier.
-- Entries written before this migration keep NULL here: they are found by
-- principal (the actor column) and tenant, not by key or source.
ALTER TABLE audit_leaves ADD COLUMN actor_seq BIGINT;
ALTER TABLE audit_leaves ADD COLUMN key_id TEXT;
ALTER TABLE audit_leaves ADD COLUMN source_key TEXT;
CREATE INDEX audit_leaves_actor_seq ON audit_leaves(actor, actor_seq);
CREATE INDEX audit_leaves_key ON audit_leaves(key_id, idx);
CREATE INDEX audit_leaves_source ON audit_leaves(source_key, idx);
