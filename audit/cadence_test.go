package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

// openLog opens a log on a fresh database with cfg's cadence settings.
func openLog(t *testing.T, tune func(*audit.Config)) *logEnv {
	t.Helper()
	e := newLog(t)
	e.log.Close()
	tune(&e.cfg)
	var err error
	if e.log, err = audit.Open(context.Background(), e.db.Read, e.db.Write, e.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.log.Close() })
	return e
}

func (e *logEnv) checkpoints(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.Read.QueryRowContext(context.Background(), `SELECT count(*) FROM audit_checkpoints`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *logEnv) latestSize(t *testing.T) uint64 {
	t.Helper()
	cp, err := e.log.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// Many appends, one commit each, sign no checkpoint before the interval
// is up: the cadence, not the commit rate, decides how many there are.
func TestCadenceManyAppendsFewCheckpoints(t *testing.T) {
	e := openLog(t, func(c *audit.Config) { c.CheckpointInterval = time.Hour })
	before := e.checkpoints(t) // Open signed the empty tree (and the first commit may sign)
	e.append(t, 50, "tn_a")
	if got := e.checkpoints(t); got > before+1 {
		t.Fatalf("50 appends within one interval signed %d checkpoints, want at most 1", got-before)
	}
	// The interval is an hour: nothing covers the last entries yet...
	if size := e.latestSize(t); size == 50 {
		t.Fatal("the 50th entry is covered although the interval is not up")
	}
	// ...unless someone needs it now (a deletion receipt, a proof): a
	// checkpoint on demand covers it at once.
	cp, err := e.log.SignCheckpoint(context.Background())
	if err != nil || cp.Size != 50 {
		t.Fatalf("on-demand checkpoint: %+v, %v", cp, err)
	}
}

// With a short interval every entry is covered without anyone asking, a
// growing log signs at most one checkpoint per interval, and an idle log
// signs none.
func TestCadenceCoversEntriesAndIdlesQuietly(t *testing.T) {
	const interval = 100 * time.Millisecond
	e := openLog(t, func(c *audit.Config) { c.CheckpointInterval = interval })
	before := e.checkpoints(t)
	start := time.Now()
	n := 0
	for time.Since(start) < 5*interval {
		e.append(t, 1, "tn_a")
		n++
	}
	elapsed := time.Since(start)
	// Covered by the cadence alone: no call to SignCheckpoint.
	deadline := time.Now().Add(20 * interval)
	for e.latestSize(t) != uint64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("entry %d not covered %v after it was appended (latest checkpoint %d)", n-1, 20*interval, e.latestSize(t))
		}
		time.Sleep(interval / 10)
	}
	signed := e.checkpoints(t) - before
	// At most one per interval (plus one for the interval in progress
	// when the loop began and one for the last, partial interval).
	if limit := int(time.Since(start)/interval) + 2; signed > limit || signed >= n {
		t.Fatalf("%d appends over %v signed %d checkpoints, want at most %d", n, elapsed, signed, limit)
	}
	// Idle: the head is signed, nothing more is.
	idle := e.checkpoints(t)
	time.Sleep(5 * interval)
	if got := e.checkpoints(t); got != idle {
		t.Fatalf("an idle log signed %d checkpoints", got-idle)
	}
}
