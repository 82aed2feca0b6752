-- Identities and enrollment (issue 12, "no single person"). Portable.
--
-- A principal belongs to an identity: the normalised address of the person
-- (or owning team) who holds it. Two-person checks compare identities and
-- who created whom, never the free-text owner label. Principals from before
-- this migration keep their owner label as a legacy identity, so the checks
-- they had (by owner) still hold for them.
ALTER TABLE principals ADD COLUMN identity TEXT;
ALTER TABLE principals ADD COLUMN created_by TEXT;
ALTER TABLE principals ADD COLUMN creator_identity TEXT;
ALTER TABLE principals ADD COLUMN verified_at BIGINT;
UPDATE principals SET identity = 'legacy:' || lower(owner) || ':' || CASE WHEN owner = '' THEN id ELSE '' END,
    verified_at = created_at;
CREATE INDEX principals_identity ON principals(identity);

-- Enrollments: a principal's keys come only from one, and its one-time
-- secret is never stored: it is a keyed PRF of the enrollment's id under a
-- system key wrapped by the KEK, computed when the mail is sent and when it
-- is presented. A database reader cannot make one.
CREATE TABLE enrollments (
    id                 TEXT PRIMARY KEY,
    principal_id       TEXT NOT NULL REFERENCES principals(id),
    tenant_id          TEXT,
    requested_by       TEXT NOT NULL,
    requester_identity TEXT NOT NULL,
    approval           TEXT NOT NULL,
    status             TEXT NOT NULL,
    not_before         BIGINT,
    decided_by         TEXT,
    decided_at         BIGINT,
    created_at         BIGINT NOT NULL,
    issued_at          BIGINT,
    expires_at         BIGINT,
    used_at            BIGINT,
    key_id             TEXT
);
CREATE INDEX enrollments_principal ON enrollments(principal_id);
CREATE INDEX enrollments_status ON enrollments(status, tenant_id);
