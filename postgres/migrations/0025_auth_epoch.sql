-- The authentication cache's invalidation counter (vault/authcache.go).
-- Any change to a principal, or to a key other than its last-used time,
-- raises n in the same transaction — whoever makes it, custos on any node
-- or a hand in the database — and every request on every node reads n
-- before it uses a cached key. A row, not a sequence: nextval is visible
-- before its transaction commits, so a reader could cache the old row
-- under the new value. Inserts need no trigger: a new row cannot make a
-- cached one stale.
CREATE TABLE auth_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);

CREATE FUNCTION auth_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_auth_epoch
AFTER UPDATE OF id, principal_id, hash, hint, scopes, created_at, expires_at, revoked_at, mac OR DELETE ON api_keys
FOR EACH STATEMENT EXECUTE FUNCTION auth_epoch_bump();
CREATE TRIGGER principals_auth_epoch
AFTER UPDATE OR DELETE ON principals
FOR EACH STATEMENT EXECUTE FUNCTION auth_epoch_bump();
