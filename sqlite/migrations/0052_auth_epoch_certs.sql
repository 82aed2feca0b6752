-- The authentication cache (vault/authcache.go) keeps a principal's
-- legacy certificate binding (principal_certs, migration 0024) with its
-- key, so a request no longer reads that table: any change to it raises
-- the invalidation counter in the same transaction, inserts included (a
-- new binding makes a cached "unbound" stale).
CREATE TRIGGER principal_certs_auth_epoch_insert AFTER INSERT ON principal_certs
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER principal_certs_auth_epoch_update AFTER UPDATE ON principal_certs
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER principal_certs_auth_epoch_delete AFTER DELETE ON principal_certs
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
