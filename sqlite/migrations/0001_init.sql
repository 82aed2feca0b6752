-- Tenants, their wrapped keysets, lists and contacts.
-- Times are unix milliseconds (INTEGER) so the same queries run on SQLite and PostgreSQL.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- keyset is the tenant's Tink keysets, encrypted under the key-encryption key
-- (never stored in plaintext). Deleting this row crypto-shreds the tenant.
CREATE TABLE tenant_keys (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    keyset     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE lists (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX lists_tenant ON lists(tenant_id, id);

-- email and attributes are AEAD ciphertexts bound to (tenant, token);
-- blind_index is a keyed PRF of the normalised address, for lookup and dedup.
CREATE TABLE contacts (
    token       TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    list_id     TEXT NOT NULL REFERENCES lists(id),
    blind_index BLOB NOT NULL,
    email       BLOB NOT NULL,
    attributes  BLOB,
    consent     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX contacts_list_blind ON contacts(list_id, blind_index);
CREATE INDEX contacts_list_token ON contacts(list_id, token);

CREATE TABLE principals (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tenant_id  TEXT,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    suspended  INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    hash         BLOB NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_principal ON api_keys(principal_id);

-- The audit log. Leaves are the entries (their bytes are what is hashed);
-- tiles hold the Merkle tree in the C2SP tlog-tiles layout: 256 hashes per
-- tile, a partial tile is overwritten as it grows. Checkpoints are signed notes.
CREATE TABLE audit_leaves (
    idx        INTEGER PRIMARY KEY,
    tenant_id  TEXT,
    tenant_seq INTEGER,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    data       BLOB NOT NULL
);
CREATE INDEX audit_leaves_tenant ON audit_leaves(tenant_id, tenant_seq);
CREATE INDEX audit_leaves_actor ON audit_leaves(actor, idx);

CREATE TABLE audit_tiles (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    width INTEGER NOT NULL,
    data  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    note      BLOB NOT NULL,
    signed_at INTEGER NOT NULL
);
