-- Support access, continued: pages-per-hour cap, break-glass, the reveal
-- register, suspension and the notification outbox. (The same DDL runs on
-- PostgreSQL: BIGINT and TEXT only, but for the outbox's sequence.)

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

-- Notifications, written in the transaction of the change they announce
-- and delivered from here with retries: none is lost.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY, -- delivery order
    id           TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    tenant_id    TEXT,
    payload      TEXT NOT NULL, -- JSON, ids and codes only: no personal data
    created_at   BIGINT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    delivered_to TEXT NOT NULL DEFAULT '', -- sinks that have it, space-separated
    done_at      BIGINT,
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox(done_at, next_at, seq);
