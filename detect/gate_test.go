package detect

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

// TestGatesNeverSkipAMatch: a rule's gates (gate.go) never keep its
// program from an event it matches. Events are drawn over every action
// the shipped pack names and some it does not, system and principal
// actors, every outcome and actor kind, own and other tenants, and the
// enrichment flags the conditions read; for every rule and event, a
// match by the program implies the gates admit the event. It also checks
// that the gates gate: most rules have one, and most events fail some
// rule's — else the first check would hold of a no-op.
func TestGatesNeverSkipAMatch(t *testing.T) {
	if raceDetector {
		t.Skip("evaluation only, no concurrency: the plain run asserts it")
	}
	rules, err := DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	actions := []string{"contact.read", "token.list", "contact.export", "support.reveal", "contact.send"}
	gated := 0
	for _, r := range rules {
		if len(r.gate) > 0 {
			gated++
		}
		for _, g := range r.gate {
			if g.field == "action" {
				actions = append(actions, g.vals...)
			}
		}
	}
	slices.Sort(actions)
	actions = slices.Compact(actions)
	if gated < len(rules)/2 {
		t.Fatalf("%d of %d rules gated: the gates read too little of the pack's conditions", gated, len(rules))
	}
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	coin := func() bool { return rng.IntN(2) == 0 }
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	matched, skipped := 0, 0
	for i := range 30000 {
		ev := &Event{Index: uint64(i),
			Leaf: audit.Leaf{Time: t0.Add(time.Duration(i) * time.Second), Action: pick(actions), Actor: pick([]string{"system", "pr_a", "pr_b"}),
				ActorKind: pick(enumFields["actor_kind"]), Outcome: pick(enumFields["outcome"]), Tenant: pick([]string{"", "tn_a", "tn_b"}),
				ActorTenant: pick([]string{"", "tn_a"}), Count: rng.IntN(3), Detail: pick([]string{"", "start: kek"}), Severity: pick([]string{"", "high"}),
				Tokens: []string{"ct_x"}[:rng.IntN(2)]},
			Canary: coin(), FirstPair: coin(), NewNetwork: coin(), NewAction: coin(), NewList: coin(), TemplateFirst: coin(),
			OwnTenant: coin(), KnownNetwork: coin(), KnownKey: coin(), StaffNetwork: coin(),
			ExportN: rng.IntN(40), ExportMean: float64(rng.IntN(1000)), SendHour: rng.IntN(500), SendN: rng.IntN(30), SendMean: float64(rng.IntN(100)),
		}
		vars := map[string]any{"event": ev.celEvent()}
		for _, r := range rules {
			if r.prg == nil {
				continue
			}
			admits := r.admits(&ev.Leaf)
			if !admits {
				skipped++
			}
			out, _, err := r.prg.Eval(vars)
			if err != nil {
				continue
			}
			if b, ok := out.Value().(bool); ok && b {
				matched++
				if !admits {
					t.Fatalf("rule %s matches event %+v, which its gates %v skip", r.ID, ev.Leaf, r.gate)
				}
			}
		}
	}
	if matched < 1000 || skipped < matched {
		t.Fatalf("%d matches and %d skips over the events: the draw exercises too little", matched, skipped)
	}
	t.Logf("%d of %d rules gated; %d matches, %d evaluations skipped", gated, len(rules), matched, skipped)
}
