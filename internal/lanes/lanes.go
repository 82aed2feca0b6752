// Package lanes runs a table of subtests several at a time, beyond the
// -parallel limit.
//
// t.Parallel subtests run GOMAXPROCS at a time (two on a 2-core CI
// machine). The authorization matrices' cells each build a whole stack and
// then spend most of their time waiting on the log (a cell measured 0.44 s
// of CPU in 1.9 s), so two at a time leaves the machine mostly idle. Run
// calls t.Run from n goroutines instead, which testing allows ("Run may be
// called simultaneously from multiple goroutines"), and each subtest runs
// synchronously in its lane, so its failures, logs and -run filtering
// behave as for any subtest.
package lanes

import (
	"sync"
	"testing"
)

// Case is one subtest.
type Case struct {
	Name string
	Test func(t *testing.T)
}

// Run runs cases as subtests of t, at most n at a time, and returns when
// all have ended.
func Run(t *testing.T, n int, cases []Case) {
	t.Helper()
	if n < 1 {
		n = 1
	}
	next := make(chan Case)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				t.Run(c.Name, c.Test)
			}
		}()
	}
	for _, c := range cases {
		next <- c
	}
	close(next)
	wg.Wait()
}
