-- The authentication cache's invalidation counter (vault/authcache.go).
-- Any change to a principal, or to a key other than its last-used time,
-- raises n in the same transaction — whoever makes it, custos or a hand
-- in the database — and every request reads n before it uses a cached
-- key. Inserts need no trigger: a new row cannot make a cached one stale.
CREATE TABLE auth_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);

CREATE TRIGGER api_keys_auth_epoch_update
AFTER UPDATE OF id, principal_id, hash, hint, scopes, created_at, expires_at, revoked_at, mac ON api_keys
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER api_keys_auth_epoch_delete AFTER DELETE ON api_keys
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER principals_auth_epoch_update AFTER UPDATE ON principals
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER principals_auth_epoch_delete AFTER DELETE ON principals
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
