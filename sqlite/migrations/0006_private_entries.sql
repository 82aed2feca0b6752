-- Private entries, public tree (docs/design.md, "Private entries, public
-- tree"). An entry's Merkle leaf becomes a salted SHA-256 commitment to its
-- JSON body; data keeps the body (private: served only to the tenant it
-- concerns and to security staff), leaf holds the commitment that entry
-- bundles serve and the tree hashes, salt the 32 random bytes under it.
-- Rows written before this migration keep leaf and salt NULL: their leaf
-- is data itself, as before, so an upgraded log still verifies (and those
-- old entries stay public).
ALTER TABLE audit_leaves ADD COLUMN leaf BLOB;
ALTER TABLE audit_leaves ADD COLUMN salt BLOB;
