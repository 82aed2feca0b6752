-- The egress relay and the inbound trap (issue 15). Portable: TEXT and
-- BIGINT only.

-- A contact the relay must not send to any more: a hard bounce or a
-- complaint came back to its VERP return path. By token: the relay never
-- learns the address it came from.
CREATE TABLE suppressions (
    token     TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    reason    TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX suppressions_tenant ON suppressions(tenant_id);

-- Mail that reached a canary address: the envelope evidence and the raw
-- message, sealed under the system free-text key (security staff read it
-- through the API, recorded).
CREATE TABLE trap_evidence (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT,
    sealed      TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
