-- Fewer bytes written per audited read (issue 17, docs/benchmarks.md (au)).
--
-- Level 0's partial tile is no longer stored: every commit rewrote it whole
-- (up to 8 KiB), and its hashes are the record hashes of the last < 256
-- leaves, derived from audit_leaves when read (audit/tiles.go readTile).
-- Full tiles, and the tiles of higher levels, are stored as before.
DELETE FROM audit_tiles WHERE level = 0 AND width < 256;
-- (actor, actor_seq) indexed the same rows in the same order as
-- (actor, idx): a principal's sequence rises with the index. The next
-- sequence number is read from the entry with the highest index instead.
DROP INDEX audit_leaves_actor_seq;
