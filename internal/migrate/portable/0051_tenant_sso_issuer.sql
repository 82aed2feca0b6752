-- The identity provider a tenant trusts for its principals' console
-- step-ups (issue 23, invariant 12): NULL trusts none, and every step-up
-- is made with the API key. A MACed column of tenant_settings (entering
-- the row MAC only when set).
ALTER TABLE tenant_settings ADD COLUMN sso_issuer TEXT;
