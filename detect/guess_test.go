package detect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// lookupAll looks each address up in tenant a's list, the first share
// through the first context, the next through the second …, as a guesser
// does: hits and misses both answer; anything else fails the test.
func lookupAll(t *testing.T, w *world, a *tenantFix, as []context.Context, guesses []string) {
	t.Helper()
	for i, g := range guesses {
		if _, err := w.vault.Lookup(as[i*len(as)/len(guesses)], a.id, a.list, g); err != nil && custos.ErrorCode(err) != custos.ENOTFOUND {
			t.Fatal(err)
		}
	}
}

// firstFiring replays leaves through a fresh engine over the default
// pack and returns the index of the leaf on which rule first fired.
func firstFiring(t *testing.T, leaves []audit.Leaf, rule string) (int, bool) {
	t.Helper()
	return ruleFired(personRun(t, nil, leaves), rule)
}

// TestAttackLookupGuessPatterns (issue 20): a key that may look up tests
// guessed addresses whose answers it learns (hit or miss), in the classes
// the issue names — numbered guesses of one stem (a1@, a2@ …), one local
// part tried across domains, dictionary words (role mailboxes, first
// names) across domains, split over two principals of one person — each
// with some right guesses among them. Each is named by its rule on the
// lookup that completes the pattern (on the event clock, no later than 1 s
// after it), the alert names every principal used, and no leaf holds an
// address: the detector saw only shapes (class and 48-bit keyed digests).
func TestAttackLookupGuessPatterns(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rule       string
		guesses    func(members []string) []string
		principals int
		crossing   int // the guess (0-based) that completes the pattern
	}{
		{"numbered guesses", "lookup-enumeration", func([]string) []string {
			var out []string
			for i := range 30 {
				out = append(out, fmt.Sprintf("a%d@acme.example", i+1))
			}
			return out
		}, 1, 9},
		{"one local part across domains", "lookup-enumeration", func([]string) []string {
			var out []string
			for _, d := range []string{"gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "acme.example", "aol.com", "icloud.com", "gmx.de", "web.de", "proton.me"} {
				out = append(out, "jane.doe@"+d)
			}
			return out
		}, 1, 7},
		{"dictionary across domains, two principals of one person", "lookup-dictionary", func(members []string) []string {
			// Some right (the list's own role mailboxes), then three words
			// at each of twelve domains: six domains by each principal.
			out := slices.Clone(members)
			for d := range 12 {
				for _, w := range []string{"info", "admin", "john"}[:3] {
					out = append(out, fmt.Sprintf("%s@firm%d.example", w, d))
				}
			}
			return out
		}, 2, 2 + 9*3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a := w.tenant("Acme", 3)
			var members []string
			for _, m := range []string{"info@firm0.example", "sales@firm1.example"} {
				c := &custos.Contact{TenantID: a.id, ListID: a.list, Email: m}
				if err := w.vault.CreateContact(a.admin, c); err != nil {
					t.Fatal(err)
				}
				members = append(members, m)
			}
			var as []context.Context
			var ids, persons []string
			for i := range tc.principals {
				name := "ed"
				if i > 0 {
					name = fmt.Sprintf("ed+%d", i+1) // the same person, another principal
				}
				p, secret := w.principal(custos.KindTenantEditor, a.id, name)
				as = append(as, w.as(secret, "198.51.100.9"))
				ids, persons = append(ids, p.ID), append(persons, p.Person)
			}
			d := w.detector(defaultRules(t))
			drain(t, w, d)
			before := len(leavesOf(t, w, "contact.lookup"))
			lookupAll(t, w, a, as, tc.guesses(members))
			drain(t, w, d)
			var alert *custos.Alert
			for _, al := range w.alerts() {
				if al.RuleID == tc.rule {
					alert = al
				}
			}
			if alert == nil {
				t.Fatalf("no %s alert (alerts %v)", tc.rule, ruleIDs(w.alerts()))
			}
			if alert.Severity != "high" {
				t.Errorf("%s is %s, want high", tc.rule, alert.Severity)
			}
			// The alert is the person's (its group), and names the
			// principal whose lookup completed the pattern.
			if !strings.Contains(alert.DedupKey, persons[0]) || len(alert.Principals) == 0 || !slices.Contains(ids, alert.Principals[0]) {
				t.Errorf("alert %s names %v, want the person %s and a principal of it", alert.DedupKey, alert.Principals, persons[0])
			}
			// On the event clock: the lookup that completes the pattern fires.
			leaves := leavesOf(t, w, "contact.lookup")[before:]
			i, ok := firstFiring(t, leaves, tc.rule)
			if !ok {
				t.Fatalf("replayed, %s did not fire", tc.rule)
			}
			if i != tc.crossing {
				t.Errorf("%s fired at lookup %d, want %d (the one that completes the pattern)", tc.rule, i, tc.crossing)
			}
			if lag := leaves[i].Time.Sub(leaves[tc.crossing].Time); lag > time.Second {
				t.Errorf("fired %v after the pattern was complete", lag)
			}
			if len(ids) > 1 {
				for _, id := range ids {
					own := slices.DeleteFunc(slices.Clone(leaves), func(l audit.Leaf) bool { return l.Actor != id })
					if _, ok := firstFiring(t, own, tc.rule); ok {
						t.Errorf("%s alone completes the pattern: the test no longer needs the person", id)
					}
				}
			}
			for _, l := range leaves {
				if !strings.HasPrefix(l.Detail, "shape ") || strings.ContainsAny(l.Detail, "@.") {
					t.Fatalf("lookup leaf detail %q: want a shape, never an address", l.Detail)
				}
			}
		})
	}
}

// TestBenignLookupDayQuiet: a tenant's support agent's ordinary day —
// eight hours of looking up the customers who write in, about twenty an
// hour, on a list of people at mail providers (some numbered, jsmith84@)
// and businesses (a fifth of them role mailboxes or lone first names,
// info@, sales@, john@), a customer now and then again, and one lookup in
// eight a miss (a typo, the customer's other address). Through a real
// vault (the shapes are the vault's own), replayed on an eight-hour event
// clock: no lookup rule fires, nor anything at medium or above.
func TestBenignLookupDayQuiet(t *testing.T) {
	w := newWorld(t)
	a := w.tenant("Acme", 0)
	r := rand.New(rand.NewPCG(20, 26))
	firsts := []string{"jane", "omar", "li", "maria", "ken", "ada", "raj", "sofia", "tom", "grace", "yuki", "pablo"}
	lasts := []string{"smith", "garcia", "chen", "okafor", "muller", "rossi", "tanaka", "novak", "silva", "kowalski", "dubois", "larsen"}
	providers := []string{"gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "gmx.de", "icloud.com"}
	roles := []string{"info", "sales", "office", "hello", "contact", "john", "anna", "admin"}
	var members []string
	seen := map[string]bool{}
	for len(members) < 240 {
		f, l := firsts[r.IntN(len(firsts))], lasts[r.IntN(len(lasts))]
		var m string
		switch k := r.IntN(10); {
		case k < 5:
			m = fmt.Sprintf("%s.%s@%s", f, l, providers[r.IntN(len(providers))])
		case k < 7:
			m = fmt.Sprintf("%c%s%d@%s", f[0], l, 60+r.IntN(40), providers[r.IntN(len(providers))])
		case k < 8:
			m = fmt.Sprintf("%s.%s@%s-%s.example", f, l, lasts[r.IntN(len(lasts))], []string{"gmbh", "ltd", "co", "inc"}[r.IntN(4)])
		default:
			m = fmt.Sprintf("%s@%s-%s.example", roles[r.IntN(len(roles))], firsts[r.IntN(len(firsts))], []string{"bakery", "studio", "garage", "clinic", "shop"}[r.IntN(5)])
		}
		if seen[m] {
			continue
		}
		seen[m] = true
		if err := w.vault.CreateContact(a.admin, &custos.Contact{TenantID: a.id, ListID: a.list, Email: m}); err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	_, secret := w.principal(custos.KindTenantEditor, a.id, "agent")
	agent := w.as(secret, "198.51.100.20")
	before := len(leavesOf(t, w, "contact.lookup"))
	var times []time.Time
	day := t0.Add(9 * time.Hour)
	for h := range 8 {
		n := 16 + r.IntN(9)
		for i := range n {
			m := members[r.IntN(len(members))]
			if r.IntN(8) == 0 {
				// A typo or the customer's other address: a miss.
				at := strings.LastIndexByte(m, '@')
				if r.IntN(2) == 0 {
					m = m[:at-1] + m[at:]
				} else {
					m = m[:at] + "@" + providers[r.IntN(len(providers))]
				}
			}
			if _, err := w.vault.Lookup(agent, a.id, a.list, m); err != nil && custos.ErrorCode(err) != custos.ENOTFOUND {
				t.Fatal(err)
			}
			times = append(times, day.Add(time.Duration(h)*time.Hour+time.Duration(i)*time.Hour/time.Duration(n)))
		}
	}
	leaves := leavesOf(t, w, "contact.lookup")[before:]
	if len(leaves) != len(times) {
		t.Fatalf("%d lookup leaves, want %d", len(leaves), len(times))
	}
	misses := 0
	for i := range leaves {
		leaves[i].Time = times[i]
		if leaves[i].Outcome == audit.OutcomeRejected {
			misses++
		}
	}
	fired := personRun(t, nil, leaves)
	for _, f := range fired {
		if strings.HasPrefix(f.rule, "lookup-") {
			t.Errorf("the agent's day raised %s at lookup %d", f.rule, f.at)
		}
	}
	if m := medium(t, fired); len(m) > 0 {
		t.Errorf("the agent's day raised %v", m)
	}
	t.Logf("%d lookups over eight hours, %d misses: %d alerts", len(leaves), misses, len(fired))
}

// TestLookupShapesBoundedAndRestored: the shapes the detector keeps are
// bounded per person (a pipeline's thousands of lookups an hour keep at
// most the most recent 256), and survive the state's save and restore: an
// enumeration half seen before a restart completes after it.
func TestLookupShapesBoundedAndRestored(t *testing.T) {
	rules := defaultRules(t)
	en := detect.NewEngine(rules)
	busy := guesses(2000, 100, func(i int) string { return fmt.Sprintf("shape other l:p%d d:e%d", i, i%50) })
	for i, e := range busy {
		l := e.leaf()
		l.Time = t0.Add(time.Duration(i) * time.Second)
		if _, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: l}); err != nil {
			t.Fatal(err)
		}
	}
	for p, g := range en.State.Guesses {
		if len(g) > 256 {
			t.Errorf("%d shapes kept for %s, want at most 256", len(g), p)
		}
	}

	seq := guesses(10, 10, func(i int) string { return fmt.Sprintf("shape other s:a l:a%d d:x", i) })
	en = detect.NewEngine(rules)
	for i, e := range seq[:5] {
		if _, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: e.leaf()}); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := json.Marshal(en.State)
	if err != nil {
		t.Fatal(err)
	}
	again := detect.NewEngine(rules)
	if err := json.Unmarshal(saved, again.State); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, e := range seq[5:] {
		hits, err := again.Evaluate(&detect.Event{Index: uint64(5 + i), Leaf: e.leaf()})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			got = append(got, h.Rule.ID)
		}
	}
	if !slices.Contains(got, "lookup-enumeration") {
		t.Errorf("after a restart the enumeration's second half raised %v, want lookup-enumeration", got)
	}
}
