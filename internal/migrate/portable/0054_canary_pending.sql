-- Canaries planted at moments of their own (issue 20, docs/detection.md
-- "Lists grown by creates"). A canary event that falls due at a real
-- create no longer rides that create's commit (its leaf shared the
-- create's instant, which told it apart in a sparse list): the create
-- queues it, at a moment drawn from the list's own gaps between creates,
-- and the vault's planter creates it then, attributed to the list's last
-- creator. last_at and gap_ms keep the list's last create and the mean of
-- its gaps (ms); pending is what waits — the list, its last creator and
-- each event's moment — sealed under the system key (AD: the list's
-- tag), so the database shows neither which list a canary is due in nor
-- when. Empty when nothing waits.
ALTER TABLE canary_plans ADD COLUMN last_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE canary_plans ADD COLUMN gap_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE canary_plans ADD COLUMN pending TEXT NOT NULL DEFAULT '';
CREATE INDEX canary_plans_pending ON canary_plans(list_tag) WHERE pending <> '';
-- A canary's token, sealed the same way (AD: its tag), so that the vault
-- can update a list's canaries as its real rows are updated; rows planted
-- before have none and are never updated.
ALTER TABLE canaries ADD COLUMN token_sealed TEXT;
-- When an echo last updated a reserved token (an import now reserves
-- tokens too): the reader's watermark row made from it shows that
-- update, which the log names like a real row's.
ALTER TABLE canary_reserve ADD COLUMN updated_at BIGINT;
