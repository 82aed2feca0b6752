-- A tenant admin's set or clear of the tenant's own KMS key waits as a
-- change (issue 22, DESIGN.md invariant 12): a second tenant admin
-- approves it, any tenant admin cancels it, or the system applies it when
-- due_at passes. Every row is MACed (vault/rowmac.go) over its deciding
-- columns: a row inserted or edited by hand in the database (a change due
-- at once, another URI) is refused, not applied. uri names a key, never a
-- secret (URIs with credentials are refused at request). Portable.
CREATE TABLE tenant_key_changes (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    op           TEXT NOT NULL,
    uri          TEXT,
    status       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approved_by  TEXT,
    cancelled_by TEXT,
    grace_ms     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    due_at       BIGINT NOT NULL,
    done_at      BIGINT,
    mac          TEXT
);
CREATE INDEX tenant_key_changes_due ON tenant_key_changes(status, due_at);
CREATE INDEX tenant_key_changes_tenant ON tenant_key_changes(tenant_id, created_at);
