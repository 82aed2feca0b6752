package audit

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A Chore is database work that is not an access to anyone's data and
// needs no entry of its own — removing a deleted tenant's rows, whose
// keys are gone (vault/delete.go) — done by the sequencer in small steps
// inside its own commit transactions ([Log.RunChore]).
//
// Why: on SQLite the sequencer's connection is the only one that may
// write, and every commit is an fsync. Work done in transactions of its
// own makes each audited request that arrives meanwhile wait for a whole
// foreign transaction and its fsync; the same work riding the commits
// the sequencer makes anyway costs those requests only the step itself
// (docs/benchmarks.md (q)).
type Chore interface {
	// Step does one bounded piece of the work in tx and reports whether
	// nothing is left after it. tx also carries the batch's entries: a
	// Step must stay short (it delays them) and must not touch the audit
	// tables. The piece is durable once tx commits; if the commit fails,
	// RunChore returns the error and the piece never happened, so a Step
	// must be safe to do again.
	Step(ctx context.Context, tx *sql.Tx) (done bool, err error)
	// Committed hears that the transaction of the last Step committed.
	Committed()
}

type chore struct {
	ctx  context.Context
	c    Chore
	done chan error // buffered: the sequencer never waits on the caller
}

// RunChore has the sequencer run c, one Step at the start of each commit
// transaction, until a Step reports done, a Step or a commit fails, or
// ctx ends; it returns then (nil when done). While no entry is waiting,
// the sequencer still steps c every Config.ChoreIdle, in a transaction
// that holds no entry, so the work finishes on an idle log too. One chore
// runs at a time: a second caller waits for the first to end.
//
// A Step that fails is rolled back alone: the batch's entries commit
// without it. A step ends the transaction's fast path for entries with
// an Apply, which then run under a savepoint each (see applyAll).
func (l *Log) RunChore(ctx context.Context, c Chore) error {
	l.choreMu.Lock()
	defer l.choreMu.Unlock()
	ch := &chore{ctx: ctx, c: c, done: make(chan error, 1)}
	select {
	case l.chores <- ch:
	case <-l.seqDone:
		return ErrUnavailable
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ch.done:
		return err
	case <-l.seqDone:
		select {
		case err := <-ch.done:
			return err
		default:
			return ErrUnavailable
		}
	}
}

// choreStep runs the current chore's step in tx, the first thing in it.
// It returns the transaction to go on with (a fresh one if the step
// failed and was rolled back), whether the step changed tx, and whether
// the step reported the chore done.
func (l *Log) choreStep(ctx context.Context, tx *sql.Tx, ch *chore) (*sql.Tx, bool, bool, error) {
	if err := ch.ctx.Err(); err != nil {
		l.endChore(err)
		return tx, false, false, nil
	}
	done, err := ch.c.Step(ch.ctx, tx)
	if err == nil {
		return tx, true, done, nil
	}
	l.endChore(fmt.Errorf("chore step: %w", err))
	tx.Rollback()
	fresh, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return tx, false, false, fmt.Errorf("begin: %w", err)
	}
	return fresh, false, false, nil
}

// endChore ends the current chore with err (nil: done). Only the
// sequencer calls it.
func (l *Log) endChore(err error) {
	if l.chore == nil {
		return
	}
	l.chore.done <- err
	l.chore = nil
}

// choreCommitted tells the current chore its step committed, and ends it
// if the step was its last.
func (l *Log) choreCommitted(stepped, done bool) {
	if !stepped || l.chore == nil {
		return
	}
	l.chore.c.Committed()
	if done {
		l.endChore(nil)
	}
}

// choreAlone runs one step of the current chore in a transaction of its
// own (no entry was waiting).
func (l *Log) choreAlone() {
	ctx := context.Background()
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		l.endChore(fmt.Errorf("begin: %w", err))
		return
	}
	defer func() { tx.Rollback() }()
	tx, stepped, done, err := l.choreStep(ctx, tx, l.chore)
	if err != nil || !stepped {
		return // a failed step or begin ended the chore
	}
	if err := tx.Commit(); err != nil {
		l.endChore(fmt.Errorf("commit: %w", err))
		return
	}
	l.choreCommitted(true, done)
}

// choreIdle is the default Config.ChoreIdle: 5 ms, not 1 ms, since on a
// loaded machine a reader off the CPU for a millisecond let the sequencer
// step alone — a transaction and an fsync of its own that the reader's
// next commit waited for (docs/benchmarks.md (w), (x)). An idle log's
// chore advances less often; it is unhurried by design.
const choreIdle = 5 * time.Millisecond
