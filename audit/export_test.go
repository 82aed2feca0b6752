package audit

import (
	"context"
	"database/sql"
	"encoding/json"

	"golang.org/x/mod/sumdb/tlog"
)

// RebuildTiles recomputes every tile from the leaves datas (commitments,
// or legacy bodies), as an attacker with the
// database and the code could: tests use it to show that only signed
// checkpoints stop a consistent rewrite.
func RebuildTiles(ctx context.Context, db *sql.DB, datas [][]byte) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit_tiles`); err != nil {
		return err
	}
	if _, err := newTileCache().extend(ctx, tx, 0, datas); err != nil {
		return err
	}
	return tx.Commit()
}

// WriteLegacy writes leaves to an empty log's database the way custos did
// before commitments (migration 0006): the leaf is the JSON body, leaf and
// salt are NULL. Open the log after it.
func WriteLegacy(ctx context.Context, db *sql.DB, leaves []Leaf) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	seqs := map[string]uint64{}
	datas := make([][]byte, len(leaves))
	for i, l := range leaves {
		if l.Tenant != "" {
			seqs[l.Tenant]++
			l.TenantSeq = seqs[l.Tenant]
		}
		if datas[i], err = json.Marshal(l); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_leaves (idx, tenant_id, tenant_seq, actor, action, created_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			int64(i), nullString(l.Tenant), nullSeq(l.TenantSeq), l.Actor, l.Action, l.Time.UnixMilli(), datas[i]); err != nil {
			return err
		}
	}
	if _, err := newTileCache().extend(ctx, tx, 0, datas); err != nil {
		return err
	}
	return tx.Commit()
}

// SetProofReaderBounds sets the bounds of a Prover's caches until the
// test ends.
func SetProofReaderBounds(t interface{ Cleanup(func()) }, tiles, hashes int) {
	oldTiles, oldHashes := proofReaderTiles, proofReaderHashes
	proofReaderTiles, proofReaderHashes = tiles, hashes
	t.Cleanup(func() { proofReaderTiles, proofReaderHashes = oldTiles, oldHashes })
}

// ProvePage is provePage, for tests that check page proofs against
// tlog's own tree.
func ProvePage(r tlog.HashReader, size uint64, idx []uint64) ([]byte, error) {
	return provePage(r, size, idx)
}

// LeafKeys, DecodeLeafKeys and FastLeafKeys expose the fast decoding of
// an entry's keys to its fuzz test.
type LeafKeys = leafKeys

func DecodeLeafKeys(b []byte, k *LeafKeys) error { return decodeLeafKeys(b, k) }

func FastLeafKeys(b []byte) bool { var k leafKeys; return fastLeafKeys(b, &k) }

// SetProveWorkers sets how many goroutines ProveAll proves on and the
// fewest entries per goroutine until the test ends.
func SetProveWorkers(t interface{ Cleanup(func()) }, workers, chunk int) {
	oldWorkers, oldChunk := proveWorkers, proveChunk
	proveWorkers, proveChunk = workers, chunk
	t.Cleanup(func() { proveWorkers, proveChunk = oldWorkers, oldChunk })
}

// SetSubjectSplit sets how many ranges SubjectEntries reads a log in at
// most (also bounded by GOMAXPROCS) and the smallest log it splits,
// until the test ends.
func SetSubjectSplit(t interface{ Cleanup(func()) }, workers int, split uint64) {
	oldWorkers, oldSplit := subjectWorkers, subjectSplit
	subjectWorkers, subjectSplit = workers, split
	t.Cleanup(func() { subjectWorkers, subjectSplit = oldWorkers, oldSplit })
}

// SetVerifyChunking makes full verifications read chunks of chunk entries
// on readers readers, until the test ends (not for parallel tests).
func SetVerifyChunking(t interface{ Cleanup(func()) }, chunk, readers int) {
	c, r := verifyChunk, verifyReaders
	verifyChunk, verifyReaders = chunk, readers
	t.Cleanup(func() { verifyChunk, verifyReaders = c, r })
}
