package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// stateAfter appends first entries, verifies the whole log and returns
// the state it kept; then it appends more entries, as happen between two
// runs of `custos log verify --state`.
func stateAfter(t *testing.T, first, more int) (*logEnv, *audit.VerifyState) {
	t.Helper()
	e := newLog(t)
	e.appendConcurrently(t, first)
	rep, err := e.verify(t)
	if err != nil {
		t.Fatal(err)
	}
	st := rep.State
	if cp, err := audit.ParseCheckpoint(st.Checkpoint, e.verifier); err != nil || cp.Size != uint64(first) {
		t.Fatalf("state after a full run: %+v, %v", cp, err)
	}
	e.appendConcurrently(t, more)
	return e, st
}

// resign makes the stored checkpoints agree with the stored tree, as an
// insider holding log.key could: delete them and let the log sign its
// head again.
func (e *logEnv) resign(t *testing.T) {
	t.Helper()
	e.log.Close()
	if _, err := e.db.Write.Exec(`DELETE FROM audit_checkpoints`); err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Open(context.Background(), e.db.Read, e.db.Write, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	lg.Close()
}

func (e *logEnv) verifyFrom(st *audit.VerifyState, scrub int) (*audit.VerifyReport, error) {
	return audit.VerifyFrom(context.Background(), e.db.Read, e.verifier, st, audit.VerifyOptions{Scrub: scrub})
}

func TestVerifyFromChecksOnlyWhatIsNew(t *testing.T) {
	e, st := stateAfter(t, 600, 400)
	rep, err := e.verifyFrom(st, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.From != 600 || rep.Size != 1000 || rep.CheckpointSize != 1000 {
		t.Fatalf("incremental run: from %d, size %d, checkpoint %d; want 600, 1000, 1000", rep.From, rep.Size, rep.CheckpointSize)
	}
	// It goes on from its own state, and agrees with a full run.
	full, err := e.verify(t)
	if err != nil || full.Root != rep.Root {
		t.Fatalf("full run: %v; roots %v / %v", err, full.Root, rep.Root)
	}
	again, err := e.verifyFrom(rep.State, 0)
	if err != nil || again.From != 1000 || again.Size != 1000 {
		t.Fatalf("run with nothing new: %+v, %v", again, err)
	}
	// Incremental: an old entry's row changed (the tree untouched) is not
	// read when nothing scrubs it...
	e.log.Close()
	args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1 WHERE idx = 100`)
	if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = 100`, args...); err != nil {
		t.Fatal(err)
	}
	if _, err := e.verifyFrom(st, 0); err != nil {
		t.Fatalf("the incremental run read entry 100, verified before: %v", err)
	}
	// ...and is found by the scrub that reaches it, and by a full run.
	var ve *audit.VerifyError
	if _, err := e.verifyFrom(st, 600); !errors.As(err, &ve) || ve.Index != 100 {
		t.Fatalf("scrub of entries 0..599: %v; want entry 100", err)
	}
	if _, err := e.verify(t); !errors.As(err, &ve) || ve.Index != 100 {
		t.Fatalf("full run: %v; want entry 100", err)
	}
}

func TestVerifyFromScrubMovesOn(t *testing.T) {
	e, st := stateAfter(t, 600, 0)
	seen := map[uint64]bool{}
	for range 4 {
		rep, err := e.verifyFrom(st, 256)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Scrubbed != 256 {
			t.Fatalf("scrubbed %d", rep.Scrubbed)
		}
		seen[st.Scrub] = true
		st = rep.State
	}
	if len(seen) < 3 {
		t.Fatalf("the scrub cursor did not move on: %v", seen)
	}
}

func TestVerifyFromCatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, e *logEnv)
		index  uint64 // the entry named; ^0: any
		reason string
	}{
		{"a tampered new entry", func(t *testing.T, e *logEnv) {
			args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1 WHERE idx = 800`)
			if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = 800`, args...); err != nil {
				t.Fatal(err)
			}
		}, 800, "commitment"},
		{"a new entry and its commitment rewritten", func(t *testing.T, e *logEnv) {
			// 700 is in a full tile (512…767), stored.
			args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 700`)
			if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 700`, args...); err != nil {
				t.Fatal(err)
			}
		}, 700, "leaf hash"},
		{"a new entry at the right edge and its commitment rewritten", func(t *testing.T, e *logEnv) {
			// 800 is in level 0's partial tile (768…999), not stored:
			// the checkpoint signed over it refuses it (audit/tiles.go).
			args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 800`)
			if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 800`, args...); err != nil {
				t.Fatal(err)
			}
		}, 600, "history was rewritten"},
		{"an old entry rewritten with the tree, re-signed with log.key", func(t *testing.T, e *logEnv) {
			args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 100`)
			if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 100`, args...); err != nil {
				t.Fatal(err)
			}
			if err := audit.RebuildTiles(context.Background(), e.db.Write, storedLeaves(t, e)); err != nil {
				t.Fatal(err)
			}
			e.resign(t)
			if _, err := e.verify(t); err != nil {
				t.Fatalf("a full run without the state cannot see a re-signed rewrite; got %v", err)
			}
		}, 600, "history was rewritten"},
		{"an old entry rewritten with the tree, not re-signed", func(t *testing.T, e *logEnv) {
			args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 100`)
			if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 100`, args...); err != nil {
				t.Fatal(err)
			}
			if err := audit.RebuildTiles(context.Background(), e.db.Write, storedLeaves(t, e)); err != nil {
				t.Fatal(err)
			}
		}, 600, "history was rewritten"},
		{"a rollback to fewer entries than the state, re-signed", func(t *testing.T, e *logEnv) {
			if _, err := e.db.Write.Exec(`DELETE FROM audit_leaves WHERE idx >= 500`); err != nil {
				t.Fatal(err)
			}
			if err := audit.RebuildTiles(context.Background(), e.db.Write, storedLeaves(t, e)); err != nil {
				t.Fatal(err)
			}
			e.resign(t)
		}, 500, "rolled back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, st := stateAfter(t, 600, 400)
			e.log.Close()
			tc.change(t, e)
			_, err := e.verifyFrom(st, 0)
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || !strings.Contains(ve.Reason, tc.reason) || ve.Index != tc.index {
				t.Fatalf("VerifyFrom = %v; want entry %d, %q", err, tc.index, tc.reason)
			}
		})
	}
}

// A state that does not hold together is refused, not trusted.
func TestVerifyFromRefusesDamagedState(t *testing.T) {
	e, st := stateAfter(t, 300, 10)
	damaged := *st
	damaged.Range = append(damaged.Range[:0:0], st.Range...)
	damaged.Range[0][0] ^= 1
	_, err := e.verifyFrom(&damaged, 0)
	var ve *audit.VerifyError
	if err == nil || errors.As(err, &ve) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("VerifyFrom with a damaged state = %v", err)
	}
	// Another log's state (signed by another key) is refused too.
	other, _ := stateAfter(t, 10, 0)
	if _, err := other.verifyFrom(st, 0); err == nil || errors.As(err, &ve) {
		t.Fatalf("another log's state: %v", err)
	}
}
