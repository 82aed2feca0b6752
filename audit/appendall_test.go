package audit_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// TestAppendAllOneCommit: the entries of one AppendAll commit in one
// transaction (one batch, one time), however busy the log is — a canary's
// entry riding a create must share the create's commit and instant
// (vault's recordBeside), and recordAll's leaves are one batch. Before,
// the sequencer could take the first entry and drain the queue before the
// second was sent, splitting the pair across two commits.
func TestAppendAllOneCommit(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 { // other traffic, so batches form and drain all the time
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(w*1_000_000+i, "tn_other")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	const pairs = 200
	split := 0
	for i := range pairs {
		var txs [3]*sql.Tx
		es := make([]audit.Entry, 3)
		for j := range es {
			es[j] = audit.Entry{Leaf: leaf(i*10+j, "tn_pair"), Apply: func(_ context.Context, tx *sql.Tx, _ *audit.Leaf) error {
				txs[j] = tx
				return nil
			}}
		}
		rs, err := e.log.AppendAll(ctx, es)
		if err != nil {
			t.Fatal(err)
		}
		if txs[0] != txs[1] || txs[1] != txs[2] || txs[0] == nil {
			split++
		}
		if rs[1].Index != rs[0].Index+1 || rs[2].Index != rs[1].Index+1 {
			t.Fatalf("pair %d at indexes %d, %d, %d: not consecutive", i, rs[0].Index, rs[1].Index, rs[2].Index)
		}
	}
	close(stop)
	wg.Wait()
	if split > 0 {
		t.Fatalf("%d of %d AppendAll calls were split across commits", split, pairs)
	}
}
