-- Rotation of the log signing key (issue 22, audit/keychain.go). Each row
-- is one transition statement: a signed note, signed by the key in force
-- before it and by the new key, naming the new verifier key and the tree
-- size from which it signs checkpoints. The statement is also the Detail
-- of a "log.key.rotate" entry in the tree, appended in the transaction
-- that writes this row. Portable: TEXT and BIGINT only.
CREATE TABLE audit_log_keys (
  from_size BIGINT PRIMARY KEY,
  vkey TEXT NOT NULL,
  note TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
