-- An export's watermark rows are kept per reader (issue 20): the same
-- person's (else principal's) next export of the list carries the same
-- rows, so diffing two exports isolates nothing. reader_tag is a keyed tag
-- (canary key) of list and reader; each row is sealed like a contact under
-- the list's keys, bound to its tenant and token, with its row MAC: a row
-- swapped in by hand does not open.
CREATE TABLE reader_canaries (
    reader_tag TEXT NOT NULL,
    token      TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    list_id    TEXT NOT NULL,
    blind      TEXT NOT NULL,
    email      TEXT NOT NULL,
    attrs      TEXT NOT NULL,
    consent    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    mac        TEXT NOT NULL,
    PRIMARY KEY (reader_tag, token)
);
CREATE INDEX reader_canaries_list ON reader_canaries(list_id);
