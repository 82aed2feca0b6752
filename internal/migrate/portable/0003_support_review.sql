-- Support access, continued: pages-per-hour cap, break-glass, the reveal
-- register. Portable: BIGINT and TEXT only.

-- Break-glass is off unless the tenant allows it.
ALTER TABLE tenant_settings ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;

-- Pages a grant has served in its current hour-long window.
ALTER TABLE grants ADD COLUMN page_window_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN pages_in_window INTEGER NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;

ALTER TABLE access_requests ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;

-- Approvals of a break-glass request: two staff_security principals, each
-- with an owner different from the requester's and from each other's.
CREATE TABLE request_approvals (
    request_id     TEXT NOT NULL REFERENCES access_requests(id),
    approver_id    TEXT NOT NULL REFERENCES principals(id),
    approver_owner TEXT NOT NULL,
    approved_at    BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);

-- Every reveal, for the tenant's admins: which contact, under which grant,
-- by whom, why. The free-text reason may hold anything staff typed, so it
-- is sealed with the tenant's keys (base64) and never put in a leaf.
CREATE TABLE reveals (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    grant_id      TEXT NOT NULL REFERENCES grants(id),
    staff_id      TEXT NOT NULL REFERENCES principals(id),
    token         TEXT NOT NULL,
    reason_code   TEXT NOT NULL,
    reason_sealed TEXT NOT NULL,
    revealed_at   BIGINT NOT NULL
);
CREATE INDEX reveals_tenant ON reveals(tenant_id, revealed_at);
