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
			entries := leavesOf(t, w, "contact.lookup")
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

// leavesOf returns the log's leaves of action, failing if any entry's
// body holds an address or a reason's text.
func leavesOf(t *testing.T, w *world, action string) []audit.Leaf {
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
			if l.Action == action {
				if bytes.Contains(e.Data, []byte("@example.org")) || bytes.Contains(e.Data, []byte("guess")) || bytes.Contains(bytes.ToLower(e.Data), []byte("bounce")) {
					t.Fatalf("entry carries an address or a reason: %s", e.Data)
				}
				out = append(out, l)
			}
		}
		from = es[len(es)-1].Index + 1
	}
	return out
}

// TestJunkReasonsRefusedAndReuseAlerts (issue 20): a support engineer
// with a reveal grant gives reasons that say nothing — ".", "x", a
// zero-width space, an emoji, white space — with an accepted reason
// code: each reveal is refused with reason_insufficient, nothing is
// revealed, the refusal is logged, and the run of refusals alerts
// (reveal-reason-junk). The same engineer then pastes one real-looking
// reason into five reveals: reveal-reason-reused fires, though no reason
// text is in the log. A colleague who writes a reason per reveal raises
// neither.
func TestJunkReasonsRefusedAndReuseAlerts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		junk      bool
		sameText  bool
		wantRules []string
	}{
		{"junk then one pasted reason", true, true, []string{"reveal-reason-junk", "reveal-reason-reused"}},
		{"a reason per reveal", false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a := w.tenant("Acme", 5)
			sam, secret := w.principal(custos.KindStaffSupport, "", "sam")
			w.grant(a, sam)
			d := w.detector(defaultRules(t))
			drain(t, w, d)
			staff := w.as(secret, "203.0.113.5")
			if tc.junk {
				for _, junk := range []string{".", "x", "\u200b", "😀", " \t "} {
					c, err := w.vault.Reveal(staff, a.id, a.tokens[0], custos.ReasonCustomerRequest, junk)
					if custos.ErrorCode(err) != custos.EREASON || c != nil {
						t.Fatalf("reveal with reason %q: %v, %v; want refused with %s", junk, c, err, custos.EREASON)
					}
				}
			}
			for i := range 5 {
				why := fmt.Sprintf("ticket SUP-%d: customer reports a bounce", 100+i)
				if tc.sameText {
					why = "Customer  asked\u200b about bounces"
					if i%2 == 1 {
						why = "customer asked about BOUNCES" // case and spacing make it no other reason
					}
				}
				if _, err := w.vault.Reveal(staff, a.id, a.tokens[i], custos.ReasonCustomerRequest, why); err != nil {
					t.Fatal(err)
				}
			}
			drain(t, w, d)
			refused := 0
			for _, l := range leavesOf(t, w, "support.reveal") {
				if l.Outcome == "rejected" && l.Code == custos.EREASON && l.Count == 0 {
					refused++
				}
			}
			if tc.junk && refused != 5 {
				t.Errorf("%d refusals logged, want 5", refused)
			}
			got := ruleIDs(w.alerts())
			for _, r := range []string{"reveal-reason-junk", "reveal-reason-reused"} {
				if slices.Contains(got, r) != slices.Contains(tc.wantRules, r) {
					t.Errorf("%s fired: %v, want %v (alerts %v)", r, slices.Contains(got, r), slices.Contains(tc.wantRules, r), got)
				}
			}
		})
	}
}
