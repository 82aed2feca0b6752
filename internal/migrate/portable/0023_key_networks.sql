-- Keys bound to network ranges (issue 20): a key may carry the CIDR ranges
-- it may be used from, space-separated, canonical (custos.CheckNetworks);
-- NULL or empty is any network. The row MAC covers the column when it is
-- set (vault/rowmac.go, rowSpec.opt), so a range added, changed or removed
-- by hand makes the key unusable and raises row-integrity.
ALTER TABLE api_keys ADD COLUMN networks TEXT;
