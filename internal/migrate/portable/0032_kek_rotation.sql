-- KEK rotation (issue 22): which key-encryption key wraps each keyset the
-- KEK wraps (keys.KEKTag of its URI: a digest, not the URI), and when it
-- was last re-wrapped (custos keys rewrap-kek). '' is "the KEK in use
-- before this migration"; a node started with no kek_previous sets it to
-- its own KEK's tag, the only one those rows can open under.
ALTER TABLE tenant_keys ADD COLUMN kek TEXT NOT NULL DEFAULT '';
ALTER TABLE tenant_keys ADD COLUMN rewrapped_at BIGINT;
ALTER TABLE system_keys ADD COLUMN kek TEXT NOT NULL DEFAULT '';
ALTER TABLE system_keys ADD COLUMN rewrapped_at BIGINT;
