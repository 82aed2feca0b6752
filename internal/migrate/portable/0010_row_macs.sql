-- Row MACs (issue 13, finding 4). Portable: TEXT only.
--
-- Security-relevant rows carry a MAC (base64, 32 bytes of HMAC-SHA256)
-- under a key the database does not hold: the system key "rows" wrapped by
-- the KEK, or for contacts the tenant's own PRF keyset. A row whose MAC does
-- not check is treated as absent. Rows from before this migration are
-- MACed once, at the first start after it, announced by one "rows.seal"
-- leaf (vault.SealRows); after that a row without a MAC is refused.
ALTER TABLE principals ADD COLUMN mac TEXT;
ALTER TABLE api_keys ADD COLUMN mac TEXT;
ALTER TABLE grants ADD COLUMN mac TEXT;
ALTER TABLE enrollments ADD COLUMN mac TEXT;
ALTER TABLE tenant_settings ADD COLUMN mac TEXT;
ALTER TABLE tenant_freezes ADD COLUMN mac TEXT;
ALTER TABLE detector_state ADD COLUMN mac TEXT;
ALTER TABLE contacts ADD COLUMN mac TEXT;

-- One row once the rows that predate MACs were sealed: with it (or the
-- "rows.seal" leaf in the log) no later start seals anything again.
CREATE TABLE row_seals (
    name      TEXT PRIMARY KEY,
    sealed_at BIGINT NOT NULL
);
