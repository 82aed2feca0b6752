package detect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// TestLookupGuessingAlerts (issue 20): a tenant admin's key tests 200
// guessed addresses by exact lookup, a few of them right; the lookups'
// leaves say hit or miss without the address, and lookup-guessing fires
// naming the principal. The same key looking up mostly addresses that are
// in the list (a pipeline resolving its own contacts) raises nothing.
func TestLookupGuessingAlerts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hitsEvery int // every hitsEvery-th lookup is a member
		wantAlert bool
	}{
		{"dictionary guessing", 40, true},
		{"resolving own contacts", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a := w.tenant("Acme", 5)
			d := w.detector(defaultRules(t))
			drain(t, w, d)
			hits := 0
			for i := range 200 {
				guess := fmt.Sprintf("guess%03d@example.org", i)
				if i%tc.hitsEvery == 0 {
					guess = fmt.Sprintf("acme%c@example.org", 'a'+i%5)
				}
				if _, err := w.vault.Lookup(a.admin, a.id, a.list, guess); err == nil {
					hits++
				} else if custos.ErrorCode(err) != custos.ENOTFOUND {
					t.Fatal(err)
				}
			}
			drain(t, w, d)
			fired := slices.Contains(ruleIDs(w.alerts()), "lookup-guessing")
			if fired != tc.wantAlert {
				t.Fatalf("%d hits of 200: lookup-guessing fired %v, want %v (alerts %v)", hits, fired, tc.wantAlert, ruleIDs(w.alerts()))
			}
			// The leaves say hit or miss, never the address.
			entries := lookupLeaves(t, w)
			if len(entries) != 200 {
				t.Fatalf("%d lookup leaves, want 200", len(entries))
			}
			misses := 0
			for _, l := range entries {
				if l.Outcome == "rejected" && l.Code == custos.ENOTFOUND {
					misses++
				} else if l.Outcome != "ok" || len(l.Tokens) != 1 {
					t.Fatalf("lookup leaf is neither hit nor miss: %+v", l)
				}
			}
			if misses != 200-hits {
				t.Fatalf("%d miss leaves, want %d", misses, 200-hits)
			}
		})
	}
}

// lookupLeaves returns the log's contact.lookup leaves, failing if any
// entry's body holds an address.
func lookupLeaves(t *testing.T, w *world) []audit.Leaf {
	t.Helper()
	ctx := context.Background()
	w.log.Sync(ctx)
	var out []audit.Leaf
	for from := uint64(0); from < w.log.Size(); {
		es, err := w.log.Entries(ctx, from, 256)
		if err != nil || len(es) == 0 {
			t.Fatalf("entries from %d: %v", from, err)
		}
		for _, e := range es {
			var l audit.Leaf
			if err := json.Unmarshal(e.Data, &l); err != nil {
				t.Fatal(err)
			}
			if l.Action == "contact.lookup" {
				if bytes.Contains(e.Data, []byte("@example.org")) || bytes.Contains(e.Data, []byte("guess")) {
					t.Fatalf("lookup entry carries the address: %s", e.Data)
				}
				out = append(out, l)
			}
		}
		from = es[len(es)-1].Index + 1
	}
	return out
}
