-- Verified deletion (issue 16). Portable: TEXT and BIGINT only.

-- A deleted tenant keeps its row (id, name, creation time: the feed and
-- the receipts refer to it) marked with when it was deleted and the
-- receipt of its deletion; requests for its data answer 410 with it.
ALTER TABLE tenants ADD COLUMN deleted_at BIGINT;
ALTER TABLE tenants ADD COLUMN receipt_id TEXT;

-- A tenant's deletion, from its request to its execution. No foreign key
-- to tenants: the row outlives everything it deletes.
CREATE TABLE deletions (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    status       TEXT NOT NULL, -- awaiting_approval, scheduled, cancelled, done
    initiator    TEXT NOT NULL, -- tenant, operator
    requested_by TEXT NOT NULL,
    approved_by  TEXT,
    cancelled_by TEXT,
    grace_ms     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    due_at       BIGINT,
    done_at      BIGINT,
    receipt_id   TEXT
);
CREATE INDEX deletions_due ON deletions(status, due_at);
CREATE INDEX deletions_tenant ON deletions(tenant_id, created_at);

-- Deletion receipts (package receipt). Not personal data: ids, counts, a
-- keyset digest, an audit entry and its proof. file is NULL until the
-- receipt is issued (in queued mode, once the leader sequenced the entry).
-- A list's or contact's deletion keeps its receipt here too.
CREATE TABLE receipts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    list_id     TEXT,
    token       TEXT,
    detail      TEXT NOT NULL, -- the statement's summary, as the entry carries it
    entry_index BIGINT,
    file        TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX receipts_tenant ON receipts(tenant_id, created_at);
-- A list's deletion leaves the list id here; requests for it answer 410.
CREATE INDEX receipts_list ON receipts(list_id);
CREATE INDEX receipts_token ON receipts(token);
