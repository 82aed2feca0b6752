package detect_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// fired is a new alert: its rule, and the index of the leaf that raised it.
type fired struct {
	rule string
	at   int
}

// personRun feeds leaves through a fresh engine over the default pack
// (with policy, if not nil) and returns the new alerts in order.
func personRun(t *testing.T, p *detect.Policy, leaves []audit.Leaf) []fired {
	t.Helper()
	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	en := detect.NewEngine(rules)
	if p != nil {
		en.SetPolicy(p)
	}
	var out []fired
	for i, l := range leaves {
		if l.Outcome == "" {
			l.Outcome = audit.OutcomeOK
		}
		hits, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: l})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.New {
				out = append(out, fired{h.Rule.ID, i})
			}
		}
	}
	return out
}

// ruleFired reports where rule first fired.
func ruleFired(fs []fired, rule string) (int, bool) {
	for _, f := range fs {
		if f.rule == rule {
			return f.at, true
		}
	}
	return 0, false
}

// medium keeps the alerts of rules at medium or above.
func medium(t *testing.T, fs []fired) []fired {
	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	var out []fired
	for _, f := range fs {
		for _, r := range rules {
			if r.ID == f.rule && slices.Index(detect.Levels, r.Level) >= slices.Index(detect.Levels, "medium") {
				out = append(out, f)
			}
		}
	}
	return out
}

// officePolicy is the simulated week's: the office known for staff, the
// pipeline for services.
func officePolicy() *detect.Policy {
	return &detect.Policy{KnownNetworks: []detect.KnownNetwork{
		{CIDR: "192.0.2.0/24", Name: "vendor office", Kinds: []string{"staff"}},
		{CIDR: "10.20.0.0/24", Name: "pipeline", Kinds: []string{"service"}},
	}}
}

// view is a masked page of tenant tn_<tenant> by staff principal
// pr_<who> of person pe_<person> at t0+at.
func view(who, person, tenant string, at time.Duration, outcome string) audit.Leaf {
	return audit.Leaf{Time: t0.Add(at), Actor: "pr_" + who, ActorKind: "staff_support", KeyID: "ak_" + who, Person: "pe_" + person,
		Source: "192.0.2.10", Action: "support.view", Tenant: "tn_" + tenant, Count: 50, Outcome: outcome}
}

// TestAttackRefusedSweepAcrossPrincipals: an engineer without grants tries
// three tenants within an hour, alternating two principals of one
// identity. Nothing is obtained, and the sweep is named by
// staff-refused-sweep; two different people each refused on a tenant or
// two are not.
func TestAttackRefusedSweepAcrossPrincipals(t *testing.T) {
	attack := []audit.Leaf{
		view("sam", "sam", "a", 0, audit.OutcomeDenied),
		view("sam2", "sam", "b", 20*time.Minute, audit.OutcomeDenied),
		view("sam", "sam", "c", 40*time.Minute, audit.OutcomeDenied),
	}
	fired := personRun(t, officePolicy(), attack)
	if i, ok := ruleFired(fired, "staff-refused-sweep"); !ok || i != 2 {
		t.Errorf("refused sweep over two principals of one person: fired %v, want staff-refused-sweep at the third tenant (2)", fired)
	}
	benign := []audit.Leaf{
		view("sam", "sam", "a", 0, audit.OutcomeDenied),
		view("tess", "tess", "b", 20*time.Minute, audit.OutcomeDenied),
		view("sam", "sam", "c", 40*time.Minute, audit.OutcomeDenied),
	}
	if fired := personRun(t, officePolicy(), benign); hasRule(fired, "staff-refused-sweep") {
		t.Errorf("two people refused on three tenants between them: fired %v", fired)
	}
}

// baselineDays is n tenants a day for three days by pr_<who> (person
// pe_<person>), one ticket every two hours from 09:00.
func baselineDays(who, person string, n int) []audit.Leaf {
	var out []audit.Leaf
	for d := range 3 {
		for i := range n {
			out = append(out, view(who, person, fmt.Sprintf("base%d", i), time.Duration(d)*24*time.Hour+time.Duration(i)*2*time.Hour, ""))
		}
	}
	return out
}

// TestAttackSlowSweepOverADay: the slow sweep. An engineer whose
// days touch one tenant (a ticket a day) reads a new tenant every 40
// minutes from 09:00 on day 3, half of them through a second principal
// of the same identity, and half of the attempts refused: never four
// tenants within an hour, never four tenants by one principal. On the
// event clock, staff-slow-sweep (high) fires at the fourth tenant, before
// the fifth, and staff-many-tenants stays quiet (the sweep is under its
// hour). A desk engineer who works five tickets a day doing the same four
// raises nothing medium or above.
func TestAttackSlowSweepOverADay(t *testing.T) {
	sweep := func(who1, who2, person string) []audit.Leaf {
		var out []audit.Leaf
		for i := range 8 {
			who, outcome := who1, ""
			if i%2 == 1 {
				who = who2
			}
			if i%4 == 3 {
				outcome = audit.OutcomeDenied
			}
			out = append(out, view(who, person, fmt.Sprintf("s%d", i), 3*24*time.Hour+time.Duration(i)*40*time.Minute, outcome))
		}
		return out
	}
	attack := append(baselineDays("sam", "sam", 1), sweep("sam", "sam2", "sam")...)
	fired := personRun(t, officePolicy(), attack)
	i, ok := ruleFired(fired, "staff-slow-sweep")
	if !ok {
		t.Fatalf("slow sweep: fired %v, want staff-slow-sweep", fired)
	}
	if first := len(attack) - 8; i-first != 3 {
		t.Errorf("staff-slow-sweep fired at tenant %d of the sweep, want the fourth", i-first+1)
	}
	rules, _ := detect.DefaultRules()
	for _, r := range rules {
		if r.ID == "staff-slow-sweep" && r.Level != "high" {
			t.Errorf("staff-slow-sweep is %s, want high", r.Level)
		}
	}
	if _, ok := ruleFired(fired, "staff-many-tenants"); ok {
		t.Errorf("staff-many-tenants fired on a sweep at 40-minute spacing: the test no longer covers the slow case")
	}

	// The same four tenants by two people, two each: quiet.
	split := append(baselineDays("sam", "sam", 1), baselineDays("tess", "tess", 1)...)
	split = append(split, sweep("sam", "tess", "")[:4]...)
	for i := len(split) - 4; i < len(split); i++ {
		split[i].Person = "pe_" + split[i].Actor[3:]
	}
	if fired := personRun(t, officePolicy(), split); len(medium(t, fired)) > 0 {
		t.Errorf("two people, four tenants between them: fired %v", fired)
	}

	// Only the fourth day is judged: the baseline days of a lone engineer
	// with five tickets a day are a newcomer's, with no colleague to
	// compare with (staff-new-sweep, TestAttackSlowSweepWithoutBaseline).
	desk := append(baselineDays("dan", "dan", 5), sweep("dan", "dan", "dan")[:4]...)
	for _, f := range medium(t, personRun(t, officePolicy(), desk)) {
		if f.at >= len(desk)-4 {
			t.Errorf("a desk engineer's usual day raised %v", f)
		}
	}
}

// TestAttackSlowSweepWithoutBaseline: the slow sweep by a person with no
// history at all — a new tenant every 40 minutes from 09:00, through two
// principals of one identity, every fourth attempt refused. On the
// event clock, staff-new-sweep (high) fires at the fourth tenant, before
// the fifth, whether the person is alone in the log or has colleagues
// who touch a tenant or two a day; the refused attempt counts toward the
// four. A newcomer joining a desk whose engineers work six tickets a day
// and working five raises nothing medium or above.
func TestAttackSlowSweepWithoutBaseline(t *testing.T) {
	sweep := func(n int) []audit.Leaf {
		var out []audit.Leaf
		for i := range n {
			who, outcome := "nia", ""
			if i%2 == 1 {
				who = "nia2"
			}
			if i%4 == 2 {
				outcome = audit.OutcomeDenied
			}
			out = append(out, view(who, "nia", fmt.Sprintf("s%d", i), 3*24*time.Hour+9*time.Hour+time.Duration(i)*40*time.Minute, outcome))
		}
		return out
	}
	rules, _ := detect.DefaultRules()
	for _, r := range rules {
		if r.ID == "staff-new-sweep" && r.Level != "high" {
			t.Errorf("staff-new-sweep is %s, want high", r.Level)
		}
	}
	for _, tc := range []struct {
		name    string
		history []audit.Leaf
	}{
		{"alone in the log", nil},
		{"colleagues with a ticket or two a day", append(baselineDays("sam", "sam", 1), baselineDays("tess", "tess", 2)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaves := append(slices.Clone(tc.history), sweep(8)...)
			fired := personRun(t, officePolicy(), leaves)
			i, ok := ruleFired(fired, "staff-new-sweep")
			if !ok {
				t.Fatalf("sweep without a baseline: fired %v, want staff-new-sweep", fired)
			}
			first := len(tc.history)
			if i-first != 3 {
				t.Errorf("staff-new-sweep fired at tenant %d of the sweep, want the fourth", i-first+1)
			}
			if at := leaves[i].Time.Sub(leaves[first].Time); at >= 4*40*time.Minute {
				t.Errorf("fired %v after the sweep began, at or after the fifth tenant", at)
			}
			if hasRule(fired, "staff-many-tenants") || hasRule(fired, "staff-slow-sweep") {
				t.Errorf("fired %v: the test no longer covers the slow sweep without a baseline", fired)
			}
			// Without the refused attempt the fourth tenant is the fifth read.
			okOnly := slices.DeleteFunc(slices.Clone(leaves), func(l audit.Leaf) bool { return l.Outcome == audit.OutcomeDenied })
			if j, _ := ruleFired(personRun(t, officePolicy(), okOnly), "staff-new-sweep"); j-first != 3 {
				t.Errorf("ok reads only: fired at read %d of the sweep, want the fourth", j-first+1)
			}
		})
	}
	// A desk of engineers working six tickets a day; the newcomer works five.
	var desk []audit.Leaf
	for _, who := range []string{"ada", "ben", "cy"} {
		desk = append(desk, baselineDays(who, who, 6)...)
	}
	slices.SortStableFunc(desk, func(a, b audit.Leaf) int { return a.Time.Compare(b.Time) })
	n := len(desk)
	for _, l := range sweep(8)[:5] {
		l.Time = l.Time.Add(40 * time.Minute) // a ticket takes 80 minutes
		desk = append(desk, l)
	}
	var newcomer []fired
	for _, f := range medium(t, personRun(t, officePolicy(), desk)) {
		if f.at >= n {
			newcomer = append(newcomer, f)
		}
	}
	if len(newcomer) > 0 {
		t.Errorf("a newcomer's first day on a busy desk raised %v", newcomer)
	}
}

func hasRule(fs []fired, rule string) bool {
	_, ok := ruleFired(fs, rule)
	return ok
}

// use is a data read by principal pr_<who> (kind, person pe_<person>)
// with key ak_<key> from src at t0+at.
func use(who, kind, person, key, src string, at time.Duration) audit.Leaf {
	l := audit.Leaf{Time: t0.Add(at), Actor: "pr_" + who, ActorKind: kind, KeyID: "ak_" + key, Source: src,
		Action: "support.view", Tenant: "tn_a", Count: 50}
	if kind == "service" {
		l.Action, l.ActorTenant = "token.list", "tn_a"
	}
	if person != "" {
		l.Person = "pe_" + person
	}
	return l
}

// TestAttackStolenKeyFirstUse: a key stolen right after it was issued is
// first used from the thief's network. Its principal (or the person
// behind it) has a history, none of it there: key-unseen-network fires on
// that first use, which key-new-network cannot see. A fresh key first
// used from a network its principal or person already used is quiet, and
// so is a service's fresh key on the pipeline the policy names.
func TestAttackStolenKeyFirstUse(t *testing.T) {
	const (
		office = "192.0.2.10"
		home   = "198.51.100.7"
		thief  = "203.0.113.9"
		pipe   = "10.20.0.5"
	)
	enroll := audit.Leaf{Time: t0, Actor: "pr_sam", ActorKind: "staff_support", KeyID: "ak_sam", Person: "pe_sam", Source: office, Action: "principal.enroll"}
	history := []audit.Leaf{enroll, use("sam", "staff_support", "sam", "sam", office, time.Hour), use("sam", "staff_support", "sam", "sam", home, 24*time.Hour)}
	svcHistory := []audit.Leaf{
		{Time: t0, Actor: "pr_svc", ActorKind: "service", KeyID: "ak_svc", Source: office, Action: "principal.enroll", ActorTenant: "tn_a"},
		use("svc", "service", "", "svc", pipe, time.Hour),
	}
	for _, tc := range []struct {
		name  string
		leaf  audit.Leaf
		alert bool
	}{
		{"fresh key of the principal, thief's network", use("sam", "staff_support", "sam", "new", thief, 48*time.Hour), true},
		{"fresh principal of the same person, thief's network", use("sam2", "staff_support", "sam", "sam2", thief, 48*time.Hour), true},
		{"fresh key of the principal, from home as before", use("sam", "staff_support", "sam", "new", home, 48*time.Hour), false},
		{"fresh principal of the same person, from home as before", use("sam2", "staff_support", "sam", "sam2", home, 48*time.Hour), false},
		{"fresh service key, thief's network", use("svc", "service", "", "svc2", thief, 48*time.Hour), true},
		{"fresh service key, the pipeline", use("svc", "service", "", "svc2", "10.20.0.77", 48*time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaves := append(append(slices.Clone(history), svcHistory...), tc.leaf)
			slices.SortStableFunc(leaves, func(a, b audit.Leaf) int { return a.Time.Compare(b.Time) })
			// Only the last use is under test (sam's first use from home
			// was itself a new network for his key).
			var got []fired
			for _, f := range personRun(t, officePolicy(), leaves) {
				if f.at == len(leaves)-1 {
					got = append(got, f)
				}
			}
			if hasRule(got, "key-unseen-network") != tc.alert {
				t.Errorf("the last use fired %v, want key-unseen-network: %v", got, tc.alert)
			}
			if hasRule(got, "key-new-network") {
				t.Errorf("key-new-network fired %v: the key was fresh, so the test no longer covers the quiet first use", got)
			}
			if !tc.alert && len(medium(t, got)) > 0 {
				t.Errorf("benign first use raised %v", medium(t, got))
			}
		})
	}
}
