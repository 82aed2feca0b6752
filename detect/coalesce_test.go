package detect

import (
	"slices"
	"testing"
)

// TestCoalesce: within a batch, the hits that add evidence to one alert
// fold into the first of them, after the hit that opened it; hits that
// open alerts and hits for other alerts stay as they are, in order.
func TestCoalesce(t *testing.T) {
	r := &Rule{ID: "r"}
	hits := []Hit{
		{Rule: r, DedupKey: "r:a:1", New: true, Evidence: []uint64{1}, Principals: []string{"pr_a"}},
		{Rule: r, DedupKey: "r:a:1", Evidence: []uint64{2}, Principals: []string{"pr_a"}},
		{Rule: r, DedupKey: "r:b:1", Evidence: []uint64{3}, Tenants: []string{"tn_b"}},
		{Rule: r, DedupKey: "r:a:1", Evidence: []uint64{4}, Principals: []string{"pr_c"}, Tenants: []string{"tn_c"}},
		{Rule: r, DedupKey: "r:a:2", New: true, Evidence: []uint64{5}},
		{Rule: r, DedupKey: "r:a:1", Evidence: []uint64{6}, Principals: []string{"pr_a"}},
	}
	got := coalesce(hits)
	type h struct {
		key        string
		new        bool
		ev         []uint64
		principals []string
	}
	want := []h{{"r:a:1", true, []uint64{1}, []string{"pr_a"}}, {"r:a:1", false, []uint64{2, 4, 6}, []string{"pr_a", "pr_c"}},
		{"r:b:1", false, []uint64{3}, nil}, {"r:a:2", true, []uint64{5}, nil}}
	if len(got) != len(want) {
		t.Fatalf("%d hits after folding, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.DedupKey != w.key || g.New != w.new || !slices.Equal(g.Evidence, w.ev) || !slices.Equal(g.Principals, w.principals) {
			t.Errorf("hit %d: %s new=%v evidence %v principals %v; want %+v", i, g.DedupKey, g.New, g.Evidence, g.Principals, w)
		}
	}
	if !slices.Equal(got[1].Tenants, []string{"tn_c"}) {
		t.Errorf("folded tenants %v", got[1].Tenants)
	}
}
