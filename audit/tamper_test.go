package audit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// appendConcurrently appends n leaves from many goroutines (group commit
// makes this fast) across three tenants.
func (e *logEnv) appendConcurrently(t *testing.T, n int) {
	t.Helper()
	var wg sync.WaitGroup
	const workers = 256
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := e.log.Append(context.Background(), audit.Entry{Leaf: leaf(i, fmt.Sprintf("tn_%d", i%3))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if _, err := e.log.SignCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTamperDetected alters the stored log the way a root user with the
// database file could, and expects Verify to name the first bad index.
func TestTamperDetected(t *testing.T) {
	const size = 1000
	for _, tc := range []struct {
		name   string
		tamper []string
		index  uint64
		reason string
	}{
		{"change a body", []string{`UPDATE audit_leaves SET data = $1 WHERE idx = 417`}, 417, "commitment"},
		{"change a salt", []string{`UPDATE audit_leaves SET salt = $1 WHERE idx = 417`}, 417, "commitment"},
		{"change a commitment", []string{`UPDATE audit_leaves SET leaf = $1 WHERE idx = 417`}, 417, "commitment"},
		{"change a body and its commitment", []string{`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 417`}, 417, "leaf hash"},
		{"pass a body off as a legacy entry", []string{`UPDATE audit_leaves SET data = $1, leaf = NULL, salt = NULL WHERE idx = 417`}, 417, "legacy"},
		{"delete a leaf", []string{`DELETE FROM audit_leaves WHERE idx = 300`}, 300, "missing"},
		{"swap two leaves", []string{
			`UPDATE audit_leaves SET idx = -1 WHERE idx = 600`,
			`UPDATE audit_leaves SET idx = 600 WHERE idx = 601`,
			`UPDATE audit_leaves SET idx = 601 WHERE idx = -1`}, 600, "leaf hash|tenant sequence gap"}, // the latter when both leaves are one tenant's
		{"change a tile", []string{`UPDATE audit_tiles SET data = $1 WHERE level = 0 AND idx = 2`}, 512, "leaf hash"},
		{"delete a tile", []string{`DELETE FROM audit_tiles WHERE level = 0 AND idx = 1`}, 256, "tile 0/1 is missing"},
		{"truncate", []string{`DELETE FROM audit_leaves WHERE idx >= 990`}, 990, "truncated"},
	} {
		// Each case twice: as the log is read by default (one chunk at
		// this size), and cut into chunks of 37 entries read on 3
		// connections, so that the tampered entry lies inside a chunk
		// other than the first, read by a reader other than the first,
		// and a tile straddles chunks.
		for _, chunked := range []bool{false, true} {
			name := tc.name
			if chunked {
				name += " (chunks of 37 on 3 readers)"
			}
			t.Run(name, func(t *testing.T) {
				if chunked {
					audit.SetVerifyChunking(t, 37, 3)
				}
				e := newLog(t)
				e.appendConcurrently(t, size)
				if _, err := e.verify(t); err != nil {
					t.Fatalf("untampered log fails: %v", err)
				}
				e.log.Close()
				for _, q := range tc.tamper {
					if _, err := e.db.Write.Exec(q, tamperArgs(t, e, q)...); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				_, err := e.verify(t)
				var ve *audit.VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("Verify after tampering: %v; want a *VerifyError", err)
				}
				if ve.Index != tc.index || !containsAny(ve.Reason, strings.Split(tc.reason, "|")) {
					t.Fatalf("Verify = %q; want entry %d, reason containing %q", err, tc.index, tc.reason)
				}
			})
		}
	}
}

// TestTamperRewrittenTree: an attacker who rewrites a leaf and recomputes
// every tile consistently is still caught by the signed checkpoints.
func TestTamperRewrittenTree(t *testing.T) {
	e := newLog(t)
	e.appendConcurrently(t, 600)
	e.log.Close()
	// Rewrite entry 10's body, commit to it again under its salt, and
	// recompute every tile consistently.
	args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 10`)
	if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 10`, args...); err != nil {
		t.Fatal(err)
	}
	if err := audit.RebuildTiles(context.Background(), e.db.Write, storedLeaves(t, e)); err != nil {
		t.Fatal(err)
	}
	_, err := e.verify(t)
	var ve *audit.VerifyError
	// The first checkpoint covering entry 10 refuses it: the final one, or
	// one signed while the entries were appended (a slow run, -race).
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "do not match the checkpoint signed at size") || ve.Index > 10 {
		t.Fatalf("Verify of a consistently rewritten tree: %v; want a checkpoint mismatch", err)
	}
}

// TestTruncationWithRebuiltTiles: entries removed from the end and the
// tiles recomputed to match — caught against the last signed checkpoint.
func TestTruncationWithRebuiltTiles(t *testing.T) {
	e := newLog(t)
	e.appendConcurrently(t, 1000)
	e.log.Close()
	if _, err := e.db.Write.Exec(`DELETE FROM audit_leaves WHERE idx >= 900`); err != nil {
		t.Fatal(err)
	}
	if err := audit.RebuildTiles(context.Background(), e.db.Write, storedLeaves(t, e)); err != nil {
		t.Fatal(err)
	}
	_, err := e.verify(t)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Index != 900 || !strings.Contains(ve.Reason, "truncated") {
		t.Fatalf("Verify = %v; want entry 900 truncated", err)
	}
	// A checkpoint held outside the database catches it even when the
	// stored checkpoints are deleted too.
	cp, _ := e.db.Read.Query(`SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`)
	var held []byte
	for cp.Next() {
		cp.Scan(&held)
	}
	cp.Close()
	e.db.Write.Exec(`DELETE FROM audit_checkpoints`)
	if _, err := e.verify(t); err != nil {
		t.Fatalf("without checkpoints the rewritten log looks consistent, as expected; got %v", err)
	}
	_, err = audit.Verify(context.Background(), e.db.Read, e.verifier, audit.VerifyOptions{Checkpoint: held})
	if !errors.As(err, &ve) || ve.Index != 900 {
		t.Fatalf("Verify against a held checkpoint = %v; want entry 900", err)
	}
}

// TestLevelOneTileTamper needs more than 65 536 entries for a level-1 tile.
func TestLevelOneTileTamper(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 66 000 entries")
	}
	e := newLog(t)
	e.appendConcurrently(t, 66_000)
	if _, err := e.verify(t); err != nil {
		t.Fatal(err)
	}
	e.log.Close()
	// Flip one byte of the second hash of tile 1/0 (the subtree of
	// entries 256..511).
	var tile []byte
	if err := e.db.Read.QueryRow(`SELECT data FROM audit_tiles WHERE level = 1 AND idx = 0`).Scan(&tile); err != nil {
		t.Fatal(err)
	}
	tile[40] ^= 1
	if _, err := e.db.Write.Exec(`UPDATE audit_tiles SET data = $1 WHERE level = 1 AND idx = 0`, tile); err != nil {
		t.Fatal(err)
	}
	_, err := e.verify(t)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Index != 256 || !strings.Contains(ve.Reason, "tile 1/0") {
		t.Fatalf("Verify = %v; want entry 256, tile 1/0", err)
	}
}

// tamperArgs are the forged values a tampering statement writes: a tile
// of random bytes; an entry's body with one word changed ($1) and, if
// asked for ($2), the commitment to it under the row's own salt, as an
// attacker with the database and the code could compute; or for a salt
// or a commitment alone, 32 random bytes.
func tamperArgs(t *testing.T, e *logEnv, q string) []any {
	t.Helper()
	if !strings.Contains(q, "$1") {
		return nil
	}
	if strings.Contains(q, "audit_tiles") {
		b := make([]byte, 8192)
		rand.Read(b)
		return []any{b}
	}
	if strings.Contains(q, "SET salt") || strings.Contains(q, "SET leaf") {
		b := make([]byte, audit.SaltSize)
		rand.Read(b)
		return []any{b}
	}
	idx := strings.TrimSpace(q[strings.LastIndex(q, "=")+1:])
	var data, salt []byte
	if err := e.db.Read.QueryRow(`SELECT data, salt FROM audit_leaves WHERE idx = `+idx).Scan(&data, &salt); err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(data, []byte("contact.read"), []byte("contact.list"), 1)
	if strings.Contains(q, "$2") {
		return []any{forged, audit.Commit(salt, forged)}
	}
	return []any{forged}
}

// storedLeaves returns every stored Merkle leaf, in order, as a rewriter
// of the tiles would read them.
func storedLeaves(t *testing.T, e *logEnv) [][]byte {
	t.Helper()
	rows, err := e.db.Read.Query(`SELECT COALESCE(leaf, data) FROM audit_leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var leaves [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, b)
	}
	return leaves
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
