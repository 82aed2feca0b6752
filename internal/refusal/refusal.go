// Package refusal counts refused anonymous requests per source (or key)
// and window, so that a flood of them becomes one audit entry per source
// and window instead of one each: the HTTP API and the relay's SMTP
// submission use it with vault.WithRefusals and Vault.RecordRefusals.
package refusal

import (
	"context"
	"sync"
	"time"

	"github.com/custos-dev/custos"
)

// Counter aggregates the refusals of each source or key per window.
type Counter struct {
	window time.Duration
	record func(ctx context.Context, n int, first, last time.Time)

	mu     sync.Mutex
	m      map[string]*tally
	closed bool
}

type tally struct {
	req         custos.Request // whose refusals (source, principal), for the flush leaf
	n           int
	first, last time.Time
	timer       *time.Timer
}

// New returns a counter that opens a window of length window per source
// and calls record with what each window counted.
func New(window time.Duration, record func(ctx context.Context, n int, first, last time.Time)) *Counter {
	return &Counter{window: window, record: record, m: map[string]*tally{}}
}

// Absorb reports whether a refusal by who (a source or a key) falls in an
// open window and is counted there. If not, it opens a window and the
// caller records this refusal on its own.
func (a *Counter) Absorb(who string, req *custos.Request) bool {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	if t := a.m[who]; t != nil {
		if t.n == 0 {
			t.first = now
		}
		t.n++
		t.last = now
		return true
	}
	t := &tally{req: custos.Request{Source: req.Source, Principal: req.Principal, Key: req.Key}}
	a.m[who] = t
	t.timer = time.AfterFunc(a.window, func() { a.flush(who, t) })
	return false
}

// flush records a window's refusals and opens the next window, or forgets
// who if the window was empty.
func (a *Counter) flush(who string, t *tally) {
	a.mu.Lock()
	if a.closed || a.m[who] != t {
		a.mu.Unlock()
		return
	}
	n, first, last := t.n, t.first, t.last
	if n == 0 {
		delete(a.m, who)
	} else {
		t.n = 0
		t.timer.Reset(a.window)
	}
	a.mu.Unlock()
	if n > 0 {
		a.record(a.context(t), n, first, last)
	}
}

func (a *Counter) context(t *tally) context.Context {
	req := t.req
	req.ID = custos.NewID(custos.PrefixRequest)
	return custos.NewContext(context.Background(), &req)
}

// Close stops the windows and records what they counted.
func (a *Counter) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	pending := a.m
	a.m = map[string]*tally{}
	a.mu.Unlock()
	for _, t := range pending {
		t.timer.Stop()
		if t.n > 0 {
			a.record(a.context(t), t.n, t.first, t.last)
		}
	}
}
