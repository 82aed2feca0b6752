-- Console single sign-on and step-up (issue 23, vault/sso.go).
--
-- console_sso_links binds an identity provider's account to one API key:
-- id is a keyed hash (the rows PRF) of the issuer and the identifying
-- claim, so the table names no account; key_hash is the key (as
-- api_keys.hash, hex) whose holder made the link while signed in with it.
-- A sign-in through the provider then authenticates that key on every
-- request, exactly as an API-key session does. mac covers the row: a hand
-- in the database cannot link its own account to someone's key.
CREATE TABLE console_sso_links (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    key_hash     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    mac          TEXT NOT NULL
);
CREATE INDEX console_sso_links_principal ON console_sso_links (principal_id);

-- A session signed in through the provider names its link (covered by
-- the session's MAC when set): unlinking ends it.
ALTER TABLE console_sessions ADD COLUMN sso_link TEXT;

-- An authorization-code flow in progress, found by the SHA-256 of its
-- state and taken (deleted) once: purpose signin, link or stepup; the
-- session a link or step-up is for; the nonce and PKCE verifier.
CREATE TABLE console_oidc_flows (
    id         TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    mac        TEXT NOT NULL
);
CREATE INDEX console_oidc_flows_created ON console_oidc_flows (created_at);

-- A step-up: a fresh authentication of one session for one action on one
-- target, used at most once before expires_at.
CREATE TABLE console_stepups (
    session_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    mac        TEXT NOT NULL,
    PRIMARY KEY (session_id, action, target)
);
