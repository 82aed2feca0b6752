-- A principal bound to a client certificate (issue 21): its API keys are
-- accepted only on a TLS connection that presented a certificate, verified
-- against the configured client CAs, whose SubjectPublicKeyInfo has this
-- SHA-256 (hex). The row carries its row MAC like a principal's: a row
-- edited by hand to another pin is no binding and refuses the principal.
CREATE TABLE principal_certs (
    principal_id TEXT PRIMARY KEY,
    spki_sha256  TEXT NOT NULL,
    bound_at     BIGINT NOT NULL,
    mac          TEXT
);

-- /readyz proves the store writable by writing here (one row per probe
-- name; nothing else reads it).
CREATE TABLE ready_probe (
    name TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
