-- Per-list data keys (issue 16): each list created from now on has its own
-- Tink AEAD and PRF keysets, wrapped under its tenant's AEAD keyset (not
-- the KEK) with the tenant, the list and the purpose as associated data
-- (keys.TenantKeys.NewListKeys), base64 here so the column is portable.
-- Deleting a list deletes its row in the list.delete entry's transaction:
-- its contacts' ciphertexts, blind indexes and row MACs are shredded,
-- backups included. A list without a row here predates this migration (a
-- legacy list): its contacts stay sealed under the tenant's keys.
CREATE TABLE list_keys (
    list_id    TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    keyset     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX list_keys_tenant ON list_keys(tenant_id);
-- Every node drops the cached keys of lists deleted since its last look
-- (vault.RunDueDeletions, every 30 s): list receipts by time.
CREATE INDEX receipts_scope_time ON receipts(scope, created_at);
