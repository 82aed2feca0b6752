package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

// TestServerStopsOnTamperLogVerifier is the log's half of issue 13,
// finding 5: the log's own verifier, running every VerifyInterval from
// the point it verified before, finds each kind of change to the stored
// log — on SQLite and PostgreSQL — and reports it once.
func TestServerStopsOnTamperLogVerifier(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, e *logEnv)
		reason string
	}{
		{"changed body", func(t *testing.T, e *logEnv) {
			e.db.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = 7`, []byte(`{"action":"nothing"}`))
		}, "commitment"},
		{"changed tile", func(t *testing.T, e *logEnv) {
			e.db.Write.Exec(`UPDATE audit_tiles SET data = $1 WHERE level = 0 AND idx = 0`, make([]byte, 32*256))
		}, "tiles"},
		{"removed entry", func(t *testing.T, e *logEnv) {
			e.db.Write.Exec(`DELETE FROM audit_leaves WHERE idx = 100`)
		}, "missing"},
		{"truncated under its checkpoint", func(t *testing.T, e *logEnv) {
			e.db.Write.Exec(`DELETE FROM audit_leaves WHERE idx >= 250`)
		}, "truncated|tile is missing"}, // the latter when a round checks the tiles first: level 0's partial tile is derived from the leaves deleted (efd452d)
		{"rewrite re-signed", func(t *testing.T, e *logEnv) {
			args := tamperArgs(t, e, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 10`)
			e.db.Write.Exec(`UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 10`, args...)
			if err := audit.RebuildTiles(context.Background(), e.db.Write, storedLeaves(t, e)); err != nil {
				t.Fatal(err)
			}
			root, err := e.log.TreeHash(context.Background(), 300)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.db.Write.Exec(`UPDATE audit_checkpoints SET note = $1, root = $2 WHERE size = 300`, forge(t, e, 300, root), root[:]); err != nil {
				t.Fatal(err)
			}
		}, "re-signed|does not match|do not match"}, // the latter two when a round runs between the statements
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLog(t)
			e.log.Close()
			reported := make(chan error, 2)
			e.cfg.VerifyInterval = 20 * time.Millisecond
			e.cfg.OnTamper = func(err error) { reported <- err }
			var err error
			if e.log, err = audit.Open(context.Background(), e.db.Read, e.db.Write, e.cfg); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.log.Close() })
			e.append(t, 300, "tn_a", "tn_b")
			e.log.Sync(context.Background())
			if _, err := e.log.SignCheckpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // a few rounds: the verifier has seen size 300
			if err := e.log.Integrity(); err != nil {
				t.Fatalf("honest log: %v", err)
			}
			tc.tamper(t, e)
			select {
			case err := <-reported:
				var te *audit.TamperError
				if !errors.As(err, &te) || !errors.Is(err, audit.ErrTampered) || !containsAny(te.Reason, strings.Split(tc.reason, "|")) {
					t.Fatalf("reported %v; want a TamperError naming %q", err, tc.reason)
				}
				if e.log.Integrity() != err {
					t.Fatalf("Integrity() = %v, want what was reported", e.log.Integrity())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the log's verifier never found the change")
			}
			select {
			case err := <-reported:
				t.Fatalf("reported twice: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}
