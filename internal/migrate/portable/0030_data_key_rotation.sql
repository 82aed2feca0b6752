-- Rotation of tenant data keys (issue 22). One row per tenant that was
-- ever rotated: its last rotation and the rewrap of its contacts under
-- the new keys (vault/rotate.go). The cursor is (list, token): every
-- contact of a list before cursor_list, and of cursor_list up to
-- cursor_token, was rewrapped, so a rewrap cut short by a crash resumes
-- there. The cursor decides nothing on its own: the old index key is
-- dropped only after a pass that finds no row still under it.
CREATE TABLE key_rotations (
    tenant_id    TEXT PRIMARY KEY,
    rotated_at   BIGINT NOT NULL,
    rotated_by   TEXT NOT NULL,
    lists        BIGINT NOT NULL DEFAULT 0,
    started_by   TEXT,
    started_at   BIGINT,
    cursor_list  TEXT NOT NULL DEFAULT '',
    cursor_token TEXT NOT NULL DEFAULT '',
    total        BIGINT NOT NULL DEFAULT 0,
    done         BIGINT NOT NULL DEFAULT 0,
    conflicts    BIGINT NOT NULL DEFAULT 0,
    stuck        BIGINT NOT NULL DEFAULT 0,
    finished_at  BIGINT
);
-- When a list's keyset was last rotated: a rotation cut short resumes
-- with the lists not rotated since the tenant's keys were.
ALTER TABLE list_keys ADD COLUMN rotated_at BIGINT;
