-- The notification outbox (the only DDL here that differs between the
-- engines: its delivery-order sequence).
-- Notifications, written in the transaction of the change they announce
-- and delivered from here with retries: none is lost.
CREATE TABLE outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- delivery order
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
