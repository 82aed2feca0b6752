-- The authentication cache (vault/authcache.go) keeps a principal's
-- legacy certificate binding (principal_certs, migration 0024) with its
-- key, so a request no longer reads that table: any change to it raises
-- the invalidation counter in the same transaction, inserts included (a
-- new binding makes a cached "unbound" stale).
CREATE TRIGGER principal_certs_auth_epoch
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON principal_certs
FOR EACH STATEMENT EXECUTE FUNCTION auth_epoch_bump();
