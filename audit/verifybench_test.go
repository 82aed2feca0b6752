package audit_test

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/sqlite"
)

// TestFullVerifyOfFile times a full audit.Verify of the log in the SQLite
// file CUSTOS_BENCH_VERIFY_DB names (one a benchmark kept, e.g.
// blastreport's CUSTOS_BENCH_BLAST_DB): its checkpoints are dropped and
// the tree head signed again under a fresh key, as blastreport does, so
// that any generated log can be verified. Skipped without the variable.
//
//	CUSTOS_BENCH_VERIFY_DB=/tmp/v1m.db go test -run TestFullVerifyOfFile -v ./audit/
func TestFullVerifyOfFile(t *testing.T) {
	path := os.Getenv("CUSTOS_BENCH_VERIFY_DB")
	if path == "" {
		t.Skip("set CUSTOS_BENCH_VERIFY_DB to a kept SQLite log")
	}
	ctx := context.Background()
	sq, err := sqlite.OpenOptions(ctx, path, sqlite.Options{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	if _, err := sq.Write.ExecContext(ctx, `DELETE FROM audit_checkpoints`); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := audit.GenerateKey("custos.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	lg, err := audit.Open(ctx, sq.Read, sq.Write, audit.Config{Origin: "custos.test/log", Signer: signer, Verifier: verifier,
		Placeholders: sq.Placeholders, VerifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	lg.Close()
	start, cpu := time.Now(), cpuTime()
	rep, err := audit.Verify(ctx, sq.Read, verifier, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, c := time.Since(start), cpuTime()-cpu
	t.Logf("full verify of %d entries: %v wall (%.0f entries/s), CPU %v (%.2f µs per entry)", rep.Size, d.Round(time.Millisecond),
		float64(rep.Size)/d.Seconds(), c.Round(time.Millisecond), float64(c.Microseconds())/float64(rep.Size))
}
