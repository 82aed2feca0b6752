package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/store"
)

// TestVerifyDir times a full verification of the log TestScale built in
// CUSTOS_VERIFY_DIR (its custos.db and log.key), read only; with
// CUSTOS_VERIFY_STOP=N it stops after N entries (for a CPU profile of
// the first N):
//
//	CUSTOS_VERIFY_DIR=/tmp/log10m go test -run TestVerifyDir -v ./audit/
func TestVerifyDir(t *testing.T) {
	dir := os.Getenv("CUSTOS_VERIFY_DIR")
	if dir == "" {
		t.Skip("set CUSTOS_VERIFY_DIR to a directory TestScale built")
	}
	stopAt, _ := strconv.ParseUint(os.Getenv("CUSTOS_VERIFY_STOP"), 10, 64)
	_, verifier := scaleKeys(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, filepath.Join(dir, "custos.db"), store.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var done uint64
	start, cpu := time.Now(), cpuTime()
	rep, err := audit.Verify(ctx, db.Read, verifier, audit.VerifyOptions{Progress: func(d, _ uint64) {
		done = d
		if stopAt > 0 && d >= stopAt {
			cancel()
		}
	}})
	d := time.Since(start)
	if err != nil && (stopAt == 0 || ctx.Err() == nil) {
		t.Fatal(err)
	}
	if rep != nil {
		done = rep.Size
	}
	t.Logf("full verify: %d entries in %v (%.0f entries/s), CPU %v (%.2f µs per entry)", done, d.Round(time.Millisecond), float64(done)/d.Seconds(),
		(cpuTime() - cpu).Round(time.Millisecond), float64(cpuTime()-cpu)/float64(done)/1e3)
}
