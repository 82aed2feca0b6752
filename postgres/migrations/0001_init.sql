-- Tenants, their wrapped keysets, lists and contacts: the PostgreSQL twin of
-- sqlite/migrations/0001_init.sql (BIGINT for integers, BYTEA for blobs).
-- Times are unix milliseconds so the same queries run on both engines.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- keyset is the tenant's Tink keysets, encrypted under the key-encryption key
-- (never stored in plaintext). Deleting this row crypto-shreds the tenant.
CREATE TABLE tenant_keys (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    keyset     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE lists (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX lists_tenant ON lists(tenant_id, id);

-- email and attributes are AEAD ciphertexts bound to (tenant, token);
-- blind_index is a keyed PRF of the normalised address, for lookup and dedup.
CREATE TABLE contacts (
    token       TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    list_id     TEXT NOT NULL REFERENCES lists(id),
    blind_index BYTEA NOT NULL,
    email       BYTEA NOT NULL,
    attributes  BYTEA,
    consent     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX contacts_list_blind ON contacts(list_id, blind_index);
CREATE INDEX contacts_list_token ON contacts(list_id, token);

CREATE TABLE principals (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tenant_id  TEXT,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    suspended  BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    hash         BYTEA NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_principal ON api_keys(principal_id);

-- The audit log. Leaves are the entries (their bytes are what is hashed);
-- tiles hold the Merkle tree in the C2SP tlog-tiles layout: 256 hashes per
-- tile, a partial tile is overwritten as it grows. Checkpoints are signed notes.
CREATE TABLE audit_leaves (
    idx        BIGINT PRIMARY KEY,
    tenant_id  TEXT,
    tenant_seq BIGINT,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    data       BYTEA NOT NULL
);
CREATE INDEX audit_leaves_tenant ON audit_leaves(tenant_id, tenant_seq);
CREATE INDEX audit_leaves_actor ON audit_leaves(actor, idx);

CREATE TABLE audit_tiles (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    width BIGINT NOT NULL,
    data  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints (
    size      BIGINT PRIMARY KEY,
    root      BYTEA NOT NULL,
    note      BYTEA NOT NULL,
    signed_at BIGINT NOT NULL
);

-- Entries written by any node, with the change they record, in one
-- transaction; the leader moves them into audit_leaves (assigning index and
-- tenant_seq) and deletes them, in one transaction. leaf is the entry's JSON
-- without its tenant_seq.
CREATE TABLE audit_queue (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT,
    leaf       BYTEA NOT NULL
);
