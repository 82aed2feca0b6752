-- Detection: the detector's cursor and state, alerts, containment, and
-- canary contacts. Portable.

-- The detector's position in the log and its evaluation state (windows,
-- first-seen sets, baselines), committed together: rules see every entry
-- once, across restarts.
CREATE TABLE detector_state (
    name       TEXT PRIMARY KEY,
    next_index BIGINT NOT NULL,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    rule_id     TEXT NOT NULL,
    title       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL UNIQUE, -- rule:group:window
    principals  TEXT NOT NULL, -- space-separated principal ids
    tenants     TEXT NOT NULL, -- space-separated tenant ids
    evidence    TEXT NOT NULL, -- space-separated leaf indexes, each provable
    actions     TEXT NOT NULL, -- containment applied, space-separated
    status      TEXT NOT NULL, -- open, acknowledged, resolved
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    acked_by    TEXT,
    resolved_by TEXT,
    note        TEXT
);
CREATE INDEX alerts_status ON alerts(status, created_at);

-- Exports and reveals frozen for a tenant until security staff lift it.
CREATE TABLE tenant_freezes (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    alert_id   TEXT,
    reason     TEXT NOT NULL,
    frozen_at  BIGINT NOT NULL
);

-- Canary contacts: HMAC tags of their tokens (and of their list, to count
-- them per list) under a key only the detector uses. The contacts
-- themselves are ordinary rows, planted with a list's first contacts.
CREATE TABLE canaries (
    tag      TEXT PRIMARY KEY,
    list_tag TEXT NOT NULL,
    addr_tag TEXT NOT NULL -- of the address, to trace a leaked one back
);
CREATE UNIQUE INDEX canaries_addr ON canaries(addr_tag);

-- Fresh canaries planted in each export (never stored as contacts): an
-- address found in a leaked file names the export and who made it.
CREATE TABLE export_canaries (
    addr_tag    TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    list_id     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    source      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    exported_at BIGINT NOT NULL
);
CREATE INDEX canaries_list ON canaries(list_tag);

-- System keysets (the canary tag key), wrapped by the KEK.
CREATE TABLE system_keys (
    name    TEXT PRIMARY KEY,
    wrapped TEXT NOT NULL
);

-- What security staff did by hand (suspend, lift, freeze, unfreeze) and
-- the reason they gave: free text, so kept here and never in a leaf (the
-- leaf names the action and its target).
CREATE TABLE containment_actions (
    id         TEXT PRIMARY KEY,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    at         BIGINT NOT NULL
);
