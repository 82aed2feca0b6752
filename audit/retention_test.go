package audit_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// Pruning deletes old checkpoints except the kept ones and the latest of
// each hour, and the log still verifies — also against a pruned
// checkpoint held outside the database.
func TestPruneKeepsKeptAndHourlyAndVerifies(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	e := openLog(t, func(c *audit.Config) {
		c.CheckpointInterval = time.Hour // only the test's SignCheckpoint calls sign
		c.CheckpointRetention = time.Hour
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	ctx := context.Background()
	sizes := map[uint64]*audit.Checkpoint{}
	at := func(d time.Duration) { clock.Store(t0.Add(d).UnixNano()) }
	step := func(d time.Duration) {
		at(d)
		e.append(t, 1, "tn_a")
		cp := e.sign(t)
		sizes[cp.Size] = cp
	}
	step(1 * time.Minute)  // size 1, hour 10
	step(2 * time.Minute)  // size 2, hour 10: handed to a tenant
	step(3 * time.Minute)  // size 3, hour 10: its hour's latest
	step(61 * time.Minute) // size 4, hour 11
	step(62 * time.Minute) // size 5, hour 11: its hour's latest
	step(3 * time.Hour)    // size 6, within the horizon
	if err := e.log.Keep(ctx, 2, audit.KeptFeed); err != nil {
		t.Fatal(err)
	}
	if err := e.log.Keep(ctx, 99, audit.KeptFeed); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("keeping a checkpoint that does not exist: %v", err)
	}
	at(3*time.Hour + time.Minute)
	n, err := e.log.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := map[uint64]bool{}
	rows, err := e.db.Read.QueryContext(ctx, `SELECT size FROM audit_checkpoints`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s int64
		rows.Scan(&s)
		left[uint64(s)] = true
	}
	rows.Close()
	for _, s := range []uint64{2, 3, 5, 6} {
		if !left[s] {
			t.Errorf("checkpoint %d was pruned; it is kept, an hour's latest or within the horizon", s)
		}
	}
	for _, s := range []uint64{1, 4} {
		if left[s] {
			t.Errorf("checkpoint %d survived pruning", s)
		}
	}
	if n < 2 {
		t.Errorf("Prune reported %d deletions", n)
	}
	// The log verifies after pruning, and still contains a pruned
	// checkpoint a tenant held.
	if _, err := audit.Verify(ctx, e.db.Read, e.verifier, audit.VerifyOptions{Checkpoint: sizes[4].Note}); err != nil {
		t.Fatalf("verify after pruning: %v", err)
	}
	// A second run deletes nothing more.
	if n, err := e.log.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("second prune: %d, %v", n, err)
	}
	// Later runs go on from where the last stopped: size 6 was its hour's
	// latest until size 7 was signed in the same hour.
	step(3*time.Hour + 10*time.Minute) // size 7, hour 13 like size 6
	at(5 * time.Hour)
	if n, err := e.log.Prune(ctx); err != nil || n != 1 {
		t.Fatalf("third prune: %d, %v; want size 6 deleted", n, err)
	}
	var n6, n7 int
	e.db.Read.QueryRow(`SELECT count(*) FROM audit_checkpoints WHERE size = 6`).Scan(&n6)
	e.db.Read.QueryRow(`SELECT count(*) FROM audit_checkpoints WHERE size = 7`).Scan(&n7)
	if n6 != 0 || n7 != 1 {
		t.Fatalf("after the third prune: size 6 ×%d, size 7 ×%d", n6, n7)
	}
	if _, err := e.verify(t); err != nil {
		t.Fatalf("verify after pruning again: %v", err)
	}
}

// Without a horizon nothing is pruned.
func TestPruneWithoutHorizonKeepsAll(t *testing.T) {
	e := newLog(t)
	e.append(t, 3, "tn_a")
	e.sign(t)
	before := e.checkpoints(t)
	if n, err := e.log.Prune(context.Background()); err != nil || n != 0 || e.checkpoints(t) != before {
		t.Fatalf("prune without a horizon: %d, %v", n, err)
	}
}

// TestPruneKeepsCosigned: a checkpoint a witness cosigned outlives the
// retention horizon (AddCosignature keeps it): /log/checkpoint serves the
// newest cosigned one, and receipts are proved against it. Without the
// cosignature the same checkpoint — older than the horizon, not its
// hour's latest — is pruned (size 1 in TestPruneKeepsKeptAndHourlyAndVerifies).
func TestPruneKeepsCosigned(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	e := openLog(t, func(c *audit.Config) {
		c.CheckpointInterval = time.Hour
		c.CheckpointRetention = time.Hour
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	ctx := context.Background()
	at := func(d time.Duration) { clock.Store(t0.Add(d).UnixNano()) }
	for _, d := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Hour} {
		at(d)
		e.append(t, 1, "tn_a")
		e.sign(t)
	}
	if err := e.log.AddCosignature(ctx, 1, "w1", "— w1 AAAA"); err != nil {
		t.Fatal(err)
	}
	at(3*time.Hour + time.Minute)
	if _, err := e.log.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := e.db.Read.QueryRowContext(ctx, `SELECT count(*) FROM audit_checkpoints WHERE size = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatal("the cosigned checkpoint of size 1 was pruned")
	}
}
