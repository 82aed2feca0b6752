-- Support access (the same DDL runs on PostgreSQL: BIGINT and TEXT only).
-- Off by default: a tenant without a settings row has support access off.
CREATE TABLE tenant_settings (
    tenant_id      TEXT PRIMARY KEY REFERENCES tenants(id),
    support_access INTEGER NOT NULL,
    max_grant_ms   BIGINT NOT NULL,
    reason_codes   TEXT NOT NULL, -- accepted reveal reason codes, space-separated; empty: all
    updated_at     BIGINT NOT NULL
);

CREATE TABLE access_requests (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    requester_id TEXT NOT NULL REFERENCES principals(id),
    reason       TEXT NOT NULL,
    ticket       TEXT NOT NULL,
    scope        TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT,
    comment      TEXT,
    grant_id     TEXT
);
CREATE INDEX access_requests_tenant ON access_requests(tenant_id, created_at);

-- Grants are never deleted: ended ones stay queryable.
CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    staff_id      TEXT NOT NULL REFERENCES principals(id),
    request_id    TEXT,
    scope         TEXT NOT NULL,
    reveal_budget INTEGER NOT NULL,
    reveals_used  INTEGER NOT NULL,
    granted_by    TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    ended_at      BIGINT,
    ended_by      TEXT
);
CREATE INDEX grants_tenant ON grants(tenant_id, starts_at);
CREATE INDEX grants_staff ON grants(staff_id, expires_at);
