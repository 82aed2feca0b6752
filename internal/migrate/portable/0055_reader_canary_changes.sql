-- A reader's watermark rows behave as stored rows for their reader
-- (issue 20, "active probes"): the reader may update one by token (the
-- change is kept here, re-sealed with its row MAC; updated_at is when,
-- NULL for a row never changed) and delete one (deleted_at: the row is a
-- tombstone, its ciphertexts and blind index erased and its MAC re-made
-- over the tombstone, so the reader's next export or page neither shows
-- it nor mints a replacement). Portable.
ALTER TABLE reader_canaries ADD COLUMN updated_at BIGINT;
ALTER TABLE reader_canaries ADD COLUMN deleted_at BIGINT;
-- adopted is 1 for a row an import by the reader added because its
-- address was a canary's the list does not hold: the reader's own row,
-- not one minted for it, so it does not count towards the watermark rows
-- its exports and pages carry.
ALTER TABLE reader_canaries ADD COLUMN adopted BIGINT;
