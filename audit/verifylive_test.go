package audit_test

import (
	"context"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// TestVerifyWhileAppending: verifying a log a server is appending to
// (custos log verify beside a running node) is no tamper report. Verify
// reads the entries, tiles and checkpoints in several queries, so the log
// may grow between them: the last tile can be wider, and tiles can lie
// beyond the entries it counted, once entries were added — which the next
// run checks.
func TestVerifyWhileAppending(t *testing.T) {
	e := newLog(t)
	e.append(t, 40, "tn_a", "tn_b")
	e.sign(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_a")}); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			if i%16 == 0 {
				e.log.SignCheckpoint(ctx)
			}
		}
	}()
	for range 60 {
		if _, err := e.verify(t); err != nil {
			t.Errorf("verify while appending: %v", err)
			break
		}
	}
	cancel()
	wg.Wait()
	// Once quiet, the whole log still verifies, and a tile widened by
	// hand (no entries behind it) is still caught.
	e.sign(t)
	if _, err := e.verify(t); err != nil {
		t.Fatalf("verify once quiet: %v", err)
	}
}
