-- The console's sign-in sessions (issue 23). The browser holds a random
-- token; the row is found by its SHA-256 (id), so a copy of the table
-- names no live cookie. key_hash is the API key the holder signed in
-- with (as api_keys.hash, hex): every request through the session
-- authenticates that key again, so revoking or expiring it, suspending
-- its principal or moving out of its networks ends the session at once.
-- csrf is the token every state-changing form carries. mac is the row's
-- MAC under the rows key (vault/session.go): a hand in the database
-- cannot mint a session for a key it has the hash of.
CREATE TABLE console_sessions (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    mac          TEXT NOT NULL
);
CREATE INDEX console_sessions_created ON console_sessions (created_at);
