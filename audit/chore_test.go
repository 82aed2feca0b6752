package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
)

// stepChore inserts one row per step into chore_rows (its step number)
// and is done after steps steps. failAt, if non-zero, makes that step
// fail after its insert. It notes, per committed step, whether the log
// grew between the step and its commit: the step rode a commit of
// entries.
type stepChore struct {
	log    *audit.Log
	steps  int
	failAt int

	mu        sync.Mutex
	n         int    // steps begun
	sizeAt    uint64 // the log's size when the last step ran
	committed []int  // committed steps
	rode      int    // committed steps whose transaction held entries
}

func (c *stepChore) Step(ctx context.Context, tx *sql.Tx) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.sizeAt = c.log.Size()
	if _, err := tx.ExecContext(ctx, `INSERT INTO chore_rows (n) VALUES ($1)`, c.n); err != nil {
		return false, err
	}
	if c.n == c.failAt {
		return false, errors.New("step failed on purpose")
	}
	return c.n >= c.steps, nil
}

func (c *stepChore) Committed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.committed = append(c.committed, c.n)
	if c.log.Size() > c.sizeAt {
		c.rode++
	}
}

// choreLog opens a log whose sequencer steps chores alone after idle,
// and the table the test chores write.
func choreLog(t *testing.T, idle time.Duration) *logEnv {
	t.Helper()
	e := newLog(t)
	e.log.Close()
	e.cfg.ChoreIdle = idle
	var err error
	if e.log, err = audit.Open(context.Background(), e.db.Read, e.db.Write, e.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.log.Close() })
	if _, err := e.db.Write.Exec(`CREATE TABLE chore_rows (n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return e
}

func choreRows(t *testing.T, e *logEnv) []int {
	t.Helper()
	return storetest.Column[int](t, e.db.Read, `SELECT n FROM chore_rows ORDER BY n`)
}

// TestChoreRidesCommits: while entries are appended, a chore's steps run
// inside the sequencer's commits of those entries; every step commits,
// and the log stays valid.
func TestChoreRidesCommits(t *testing.T) {
	e := choreLog(t, time.Hour) // never alone: every step must ride an entry's commit
	ctx := context.Background()
	c := &stepChore{log: e.log, steps: 20}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_a")}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	err := e.log.RunChore(ctx, c)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := choreRows(t, e); len(got) != 20 || got[0] != 1 || got[19] != 20 {
		t.Fatalf("chore rows %v, want 1…20", got)
	}
	if len(c.committed) != 20 || c.rode != 20 {
		t.Fatalf("%d steps committed, %d of them with entries; want 20 and 20", len(c.committed), c.rode)
	}
	e.sign(t)
	if _, err := e.verify(t); err != nil {
		t.Fatal(err)
	}
}

// TestChoreAlone: on an idle log the sequencer steps the chore in
// transactions of its own until it is done.
func TestChoreAlone(t *testing.T) {
	e := choreLog(t, time.Millisecond)
	c := &stepChore{log: e.log, steps: 5}
	if err := e.log.RunChore(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := choreRows(t, e); len(got) != 5 {
		t.Fatalf("chore rows %v, want 5", got)
	}
	if e.log.Size() != 0 {
		t.Fatalf("log size %d after a chore alone, want 0", e.log.Size())
	}
}

// TestChoreStepFails: a failed step is rolled back alone — the entries of
// its commit are durable — and ends the chore with its error.
func TestChoreStepFails(t *testing.T) {
	e := choreLog(t, time.Hour)
	ctx := context.Background()
	c := &stepChore{log: e.log, steps: 10, failAt: 2}
	errc := make(chan error, 1)
	go func() { errc <- e.log.RunChore(ctx, c) }()
	for i := 0; ; i++ {
		if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_a")}); err != nil {
			t.Fatalf("append %d beside a failing chore: %v", i, err)
		}
		select {
		case err := <-errc:
			if err == nil || err.Error() != "chore step: step failed on purpose" {
				t.Fatalf("RunChore = %v, want the step's error", err)
			}
			if got := choreRows(t, e); len(got) != 1 || got[0] != 1 {
				t.Fatalf("chore rows %v, want only step 1's", got)
			}
			if uint64(i+1) != e.log.Size() {
				t.Fatalf("log size %d after %d appends", e.log.Size(), i+1)
			}
			return
		default:
		}
		if i > 10000 {
			t.Fatal("the chore never ended")
		}
	}
}

// TestChoreCommitFails: a commit that fails takes its step with it and
// ends the chore with ErrUnavailable; the step is not reported
// committed.
func TestChoreCommitFails(t *testing.T) {
	e := choreLog(t, time.Hour)
	ctx := context.Background()
	c := &stepChore{log: e.log, steps: 10}
	errc := make(chan error, 1)
	go func() { errc <- e.log.RunChore(ctx, c) }()
	for i := 0; ; i++ { // until a step has committed with an entry
		if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_a")}); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		n := len(c.committed)
		c.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	heal := storetest.FailInserts(t, e.db, "audit_leaves")
	if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(1, "tn_a")}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("append with inserts failing = %v, want ErrUnavailable", err)
	}
	heal()
	if err := <-errc; !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("RunChore = %v, want ErrUnavailable", err)
	}
	got := choreRows(t, e)
	if len(got) != 1 || len(c.committed) != 1 {
		t.Fatalf("chore rows %v, committed steps %v; want step 1 alone", got, c.committed)
	}
	// The log goes on, and a new chore runs.
	if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(2, "tn_a")}); err != nil {
		t.Fatal(err)
	}
}

// TestChoreEnds: a chore ends when its context does, and when the log
// is closed.
func TestChoreEnds(t *testing.T) {
	e := choreLog(t, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	c := &stepChore{log: e.log, steps: 1 << 30}
	errc := make(chan error, 1)
	go func() { errc <- e.log.RunChore(ctx, c) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunChore after cancel = %v", err)
	}
	go func() { errc <- e.log.RunChore(context.Background(), &stepChore{log: e.log, steps: 1 << 30}) }()
	time.Sleep(20 * time.Millisecond)
	e.log.Close()
	if err := <-errc; !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("RunChore across Close = %v, want ErrUnavailable", err)
	}
	if err := e.log.RunChore(context.Background(), &stepChore{log: e.log, steps: 1}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("RunChore on a closed log = %v, want ErrUnavailable", err)
	}
}
