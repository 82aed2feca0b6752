package lanes_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/custos-dev/custos/internal/lanes"
)

// TestRunsInLanes: every case runs once, and up to n at a time — more
// than -parallel's default on a small machine — never more.
func TestRunsInLanes(t *testing.T) {
	const n, cases = 6, 30
	var running, most atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	all := make(chan struct{})
	var arrived atomic.Int32
	var cs []lanes.Case
	for i := range cases {
		name := fmt.Sprintf("case%d", i)
		cs = append(cs, lanes.Case{Name: name, Test: func(t *testing.T) {
			now := running.Add(1)
			defer running.Add(-1)
			for {
				m := most.Load()
				if now <= m || most.CompareAndSwap(m, now) {
					break
				}
			}
			// The first n cases wait for each other: they can only all
			// arrive if n lanes run at once.
			if arrived.Add(1) == n {
				close(all)
			}
			<-all
			mu.Lock()
			seen[t.Name()]++
			mu.Unlock()
		}})
	}
	lanes.Run(t, n, cs)
	if len(seen) != cases {
		t.Fatalf("%d cases ran, want %d", len(seen), cases)
	}
	for name, k := range seen {
		if k != 1 {
			t.Errorf("%s ran %d times", name, k)
		}
	}
	if most.Load() != n {
		t.Errorf("at most %d ran at once, want %d", most.Load(), n)
	}
}
