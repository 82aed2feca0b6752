-- Bring your own key (issue 22): a tenant's keysets may be wrapped under
-- its own KMS key as well as custos's KEK (docs/keys.md, "A tenant's own
-- key"). kms_uri names that key (NULL: custos-managed, the KEK alone);
-- the keyset column then holds the doubly wrapped blob, and both change in
-- one transaction. kms_set_at/kms_set_by say when and by whom it was set.
-- kms_down_since is set when the key first refused custos (one
-- tenant_key.unavailable entry and one notice per outage) and cleared when
-- it works again. A kms_uri nulled by hand leaves a blob the KEK alone
-- does not open: the tenant's data stays shut.
ALTER TABLE tenant_keys ADD COLUMN kms_uri TEXT;
ALTER TABLE tenant_keys ADD COLUMN kms_set_at BIGINT;
ALTER TABLE tenant_keys ADD COLUMN kms_set_by TEXT;
ALTER TABLE tenant_keys ADD COLUMN kms_down_since BIGINT;
