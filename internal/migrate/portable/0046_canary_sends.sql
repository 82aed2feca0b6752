-- The relay delivers to canaries like to any recipient (issue 20): a list's
-- canaries and a reader's watermark rows travel the upstream mail server
-- with every campaign that names them, so a file made from relay traffic
-- carries them too. Each canary delivery is kept here so the trap tells
-- the relay's own message, arriving through the upstream, from anyone
-- else's: it must come from the return path the relay gave it, once, within
-- a window. Rows are MACed (vault/rowmac.go) over every column: a
-- row written or re-armed by hand to make a phisher's message look relayed
-- is refused. addr_tag is the canary address's keyed tag (the
-- canary key), never the address. Portable.
CREATE TABLE canary_sends (
    id          TEXT PRIMARY KEY,
    addr_tag    TEXT NOT NULL,
    return_path TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    sent_at     BIGINT NOT NULL,
    arrived_at  BIGINT,
    mac         TEXT
);
CREATE INDEX canary_sends_addr ON canary_sends(addr_tag, sent_at);
CREATE INDEX canary_sends_sent ON canary_sends(sent_at);

-- A send to a reader's watermark token resolves it (it is a canary, not an
-- unknown token): found by token.
CREATE INDEX reader_canaries_token ON reader_canaries(token);
