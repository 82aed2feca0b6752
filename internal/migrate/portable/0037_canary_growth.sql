-- Canaries of a list grown by single creates (issue 20). Each is created
-- through the create path with a create leaf of its own, riding a real
-- create's commit, at positions drawn over the list's growth: the plan
-- holds, per list (keyed tag), how many real creates it has seen and the
-- positions still due, each for a list canary (c) or a reserved token (r).
-- A reserved token is named by its own create leaf like any contact but
-- stored here, not as a contact: a reader's first export or page takes it
-- for one of its watermark rows, which is then named by the log like the
-- list's real rows. Both go with the list and the tenant.
CREATE TABLE canary_plans (
    list_tag TEXT PRIMARY KEY,
    creates  BIGINT NOT NULL,
    due      TEXT NOT NULL
);
CREATE TABLE canary_reserve (
    token      TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    list_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    reader_tag TEXT
);
CREATE INDEX canary_reserve_list ON canary_reserve(list_id);
