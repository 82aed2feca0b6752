-- People told by name (docs/notifications.md).
--
-- notify_muted: the informational topics a principal chose not to be
-- mailed about. Security topics cannot be muted (vault/people.go): a row
-- naming one is ignored, so a row planted behind custos's back mutes
-- nothing that matters.
CREATE TABLE notify_muted (
    principal_id TEXT NOT NULL,
    topic        TEXT NOT NULL,
    PRIMARY KEY (principal_id, topic)
);
-- notify_mailed: which person got which outbox message, so a retried
-- delivery (one of several admins' servers refused) mails only those
-- not mailed yet.
CREATE TABLE notify_mailed (
    message_id   TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    mailed_at    BIGINT NOT NULL,
    PRIMARY KEY (message_id, principal_id)
);
-- grant_uses: a grant's first use, recorded in the transaction of the
-- leaf of that use; the insert that creates the row is the one that
-- announces it.
CREATE TABLE grant_uses (
    grant_id     TEXT PRIMARY KEY,
    first_at     BIGINT NOT NULL
);
-- expiry_marks: a grant or key that is about to expire or has expired is
-- announced once; the mark is written in the transaction of the leaf that
-- announces it.
CREATE TABLE expiry_marks (
    object_id TEXT NOT NULL,
    stage     TEXT NOT NULL,
    marked_at BIGINT NOT NULL,
    PRIMARY KEY (object_id, stage)
);
-- A principal's verified address, sealed with the system AEAD (bound to
-- the principal's id). principals.identity then holds its person
-- pseudonym (a keyed PRF of the address, "pe_…"): what the two-person
-- checks compare and what notices dedupe by. Rows from before this
-- migration are converted by the vault at start (Vault.SealIdentities).
ALTER TABLE principals ADD COLUMN identity_sealed TEXT;
