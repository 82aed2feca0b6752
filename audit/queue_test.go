package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/postgres"
)

// queuedNodes opens n queued-mode logs over one fresh PostgreSQL schema,
// as n custos nodes would.
func queuedNodes(t *testing.T, n int) ([]*audit.Log, *postgres.DB, *logEnv) {
	t.Helper()
	base := storetest.PostgresURL(t)
	if storetest.Engine() != storetest.Postgres {
		t.Skip("runs in the PostgreSQL pass of this package")
	}
	url := storetest.NewSchema(t, base)
	e := newLog(t) // for its keys and config only
	var logs []*audit.Log
	var first *postgres.DB
	for i := 0; i < n; i++ {
		db, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.cfg
		cfg.Queued, cfg.Placeholders = true, db.Placeholders
		cfg.LeaderPoll, cfg.CheckpointInterval = 50*time.Millisecond, 100*time.Millisecond
		lg, err := audit.Open(context.Background(), db.Read, db.Write, cfg)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, lg)
		if first == nil {
			first = db
		}
		t.Cleanup(func() { lg.Close(); db.Close() })
	}
	return logs, first, e
}

func waitLeader(t *testing.T, logs []*audit.Log) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for i, l := range logs {
			if l.IsLeader() {
				return i
			}
		}
	}
	t.Fatal("no node became the sequencer within 10 s")
	return -1
}

// TestQueuedNodesFailover: three nodes append concurrently; the leader's
// database session is killed mid-load (as SIGKILL would end it); another
// node takes over, and afterwards every acknowledged entry is in the tree
// exactly once, tenant sequences have no gap, and Verify passes.
func TestQueuedNodesFailover(t *testing.T) {
	logs, db, e := queuedNodes(t, 3)
	ctx := context.Background()
	first := waitLeader(t, logs)

	const perNode = 300
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for n, lg := range logs {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perNode; i += 4 {
					if n == 0 && i == perNode/2 {
						close(killed) // exactly one worker of node 0 reaches i == perNode/2
					}
					l := leaf(i, fmt.Sprintf("tn_%d", i%3))
					l.RequestID = fmt.Sprintf("rq_%d_%d", n, i)
					r, err := lg.Append(ctx, audit.Entry{Leaf: l})
					if err != nil {
						continue // not acknowledged: may or may not be logged
					}
					if !r.Queued {
						t.Errorf("queued-mode receipt %+v", r)
					}
					mu.Lock()
					acked[l.RequestID] = true
					mu.Unlock()
				}
			}()
		}
	}
	<-killed
	// End the leader's session (this schema's: other packages' tests may
	// lead logs in other schemas): its advisory lock goes with it.
	res, err := db.Write.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid = $1 AND objid::bigint = (hashtext(current_schema())::bigint & 4294967295)`, uint32(audit.LeaderLockClass))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("terminated %d leader sessions, want 1", n)
	}
	wg.Wait()
	// Someone leads again (possibly the same node, on a new session).
	waitLeader(t, logs)
	if err := logs[first].Sync(ctx); err != nil {
		t.Fatal(err)
	}

	rows, err := db.Read.Query(`SELECT data FROM audit_leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		var l audit.Leaf
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		seen[l.RequestID]++
	}
	rows.Close()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s is in the log %d times", id, c)
		}
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged %s is not in the log", id)
		}
	}
	if len(acked) < 3*perNode*9/10 {
		t.Errorf("only %d of %d appends acknowledged", len(acked), 3*perNode)
	}
	for _, lg := range logs {
		lg.Close()
	}
	if _, err := audit.Verify(ctx, db.Read, e.verifier, audit.VerifyOptions{}); err != nil {
		t.Fatalf("verify after failover: %v", err)
	}
}
