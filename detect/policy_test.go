package detect_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// Principal ids of the policy tests (exceptions name real ids).
var (
	etl = custos.NewID(custos.PrefixPrincipal)
	sec = custos.NewID(custos.PrefixPrincipal)
)

func TestPolicyValidate(t *testing.T) {
	rules := defaultRules(t)
	now := t0
	ok := detect.Exception{Rule: "key-new-network", Actor: etl, Owner: sec, Expires: now.Add(24 * time.Hour), Reason: "moving the sync job"}
	for _, c := range []struct {
		name string
		edit func(p *detect.Policy)
		want string // "" valid
	}{
		{"valid", func(p *detect.Policy) {}, ""},
		{"no owner", func(p *detect.Policy) { p.Exceptions[0].Owner = "" }, "exceptions[0].owner is required"},
		{"no expiry", func(p *detect.Policy) { p.Exceptions[0].Expires = time.Time{} }, "exceptions[0].expires is required"},
		{"expiry too far", func(p *detect.Policy) { p.Exceptions[0].Expires = now.Add(100 * 24 * time.Hour) }, "more than 90 days ahead"},
		{"owner silences itself", func(p *detect.Policy) { p.Exceptions[0].Owner = etl }, "cannot be owned by the principal it silences"},
		{"no subject", func(p *detect.Policy) { p.Exceptions[0].Actor = "" }, "name what it excepts"},
		{"unknown rule", func(p *detect.Policy) { p.Exceptions[0].Rule = "key-new-netwrok" }, `no rule "key-new-netwrok" in the rule set (did you mean key-new-network?)`},
		{"built-in rule", func(p *detect.Policy) { p.Exceptions[0].Rule = "exception-expired" }, `no rule "exception-expired"`},
		{"no reason", func(p *detect.Policy) { p.Exceptions[0].Reason = " " }, "reason is required"},
		{"bad cidr", func(p *detect.Policy) { p.KnownNetworks[0].CIDR = "10.20.0.0/33" }, "known_networks[0].cidr"},
		{"wrong-cased kind", func(p *detect.Policy) { p.KnownNetworks[0].Kinds = []string{"Service"} }, `"Service" is not one of`},
		{"no kinds", func(p *detect.Policy) { p.KnownNetworks[0].Kinds = nil }, "kinds is required"},
		{"bad key", func(p *detect.Policy) { p.KnownKeys = []detect.KnownKey{{Key: "nope", Name: "x"}} }, "known_keys[0].key"},
		{"baseline days", func(p *detect.Policy) { p.BaselineDays = 31 }, "baseline_days must be between 1 and 30"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &detect.Policy{KnownNetworks: []detect.KnownNetwork{{CIDR: "10.20.0.0/16", Name: "pipeline", Kinds: []string{"service"}}},
				Exceptions: []detect.Exception{ok}}
			c.edit(p)
			err := p.Validate(rules, now)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

// policyRun feeds leaves through an engine over the default pack with p
// and returns the new alerts as "rule principals".
func policyRun(t *testing.T, p *detect.Policy, leaves []audit.Leaf) []string {
	t.Helper()
	en := detect.NewEngine(defaultRules(t))
	if p != nil {
		if err := p.Validate(en.Rules, t0); err != nil {
			t.Fatal(err)
		}
	}
	en.SetPolicy(p)
	var out []string
	for i := range leaves {
		hits, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: leaves[i]})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.New {
				out = append(out, h.Rule.ID+" "+strings.Join(h.Principals, ","))
			}
		}
	}
	return out
}

func svcRead(at time.Duration, src string) audit.Leaf {
	return audit.Leaf{Time: t0.Add(at), Actor: etl, ActorKind: "service", ActorTenant: "tn_a", Person: "pe_team", KeyID: "ky_etl",
		Source: src, Action: "token.list", Tenant: "tn_a", Count: 10, Outcome: "ok"}
}

// TestExceptionExpires: an exception silences its rule for its subject
// until it expires; then an alert says so and the rule applies again.
func TestExceptionExpires(t *testing.T) {
	p := &detect.Policy{Exceptions: []detect.Exception{{Rule: "key-new-network", Actor: etl, Owner: sec,
		Expires: t0.Add(2 * time.Hour), Reason: "the sync job moves hosts"}}}
	leaves := []audit.Leaf{
		svcRead(0, "10.20.0.5"),
		svcRead(time.Hour, "10.99.0.5"), // new network, excepted
		svcRead(3*time.Hour, "10.77.0.5"),
	}
	got := policyRun(t, p, leaves)
	want := []string{"exception-expiring " + sec, "exception-expired " + sec, "key-new-network " + etl}
	if !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
	// Without the exception the first move alerts too: the exception
	// is what kept it quiet.
	if got := policyRun(t, nil, leaves); !slices.Equal(got, []string{"key-new-network " + etl, "key-new-network " + etl}) {
		t.Fatalf("without the exception: %v, want both moves alerted", got)
	}
}

// TestExceptionNeverSilencesItsOwner: an exception whose owner is the
// person it would silence (through another of their principals) is not
// applied, and raises an alert naming the owner.
// TestExceptionExpiringAnnouncedOnce: an exception is announced once when
// it comes within ExceptionNotice of its expiry — not before, not again.
func TestExceptionExpiringAnnouncedOnce(t *testing.T) {
	p := &detect.Policy{Exceptions: []detect.Exception{{Rule: "key-new-network", Actor: etl, Owner: sec,
		Expires: t0.Add(72 * time.Hour), Reason: "the sync job moves hosts"}}}
	early := []audit.Leaf{svcRead(0, "10.20.0.5"), svcRead(time.Hour, "10.20.0.5")}
	if got := policyRun(t, p, early); len(got) != 0 {
		t.Fatalf("two days before expiry: %v, want nothing", got)
	}
	late := append(early, svcRead(48*time.Hour+time.Minute, "10.20.0.5"), svcRead(50*time.Hour, "10.20.0.5"), svcRead(60*time.Hour, "10.20.0.5"))
	if got := policyRun(t, p, late); !slices.Equal(got, []string{"exception-expiring " + sec}) {
		t.Fatalf("within a day of expiry: %v, want one exception-expiring", got)
	}
}

func TestExceptionNeverSilencesItsOwner(t *testing.T) {
	p := &detect.Policy{Exceptions: []detect.Exception{{Rule: "key-new-network", Actor: etl, Owner: sec,
		Expires: t0.Add(48 * time.Hour), Reason: "the sync job moves hosts"}}}
	owner := audit.Leaf{Time: t0, Actor: sec, ActorKind: "staff_security", Person: "pe_team", KeyID: "ky_sec", Source: "192.0.2.4", Action: "alert.list", Outcome: "ok"}
	got := policyRun(t, p, []audit.Leaf{owner, svcRead(time.Minute, "10.20.0.5"), svcRead(time.Hour, "10.99.0.5")})
	if !slices.Contains(got, "exception-self "+sec) || !slices.Contains(got, "key-new-network "+etl) {
		t.Fatalf("alerts %v, want exception-self naming the owner and key-new-network (not silenced)", got)
	}
	// The owner's person known from the database at start (node.Open
	// looks it up), before the owner ever acts: the same.
	p.SetOwner(sec, "pe_team")
	if got := policyRun(t, p, []audit.Leaf{svcRead(time.Minute, "10.20.0.5"), svcRead(time.Hour, "10.99.0.5")}); !slices.Contains(got, "exception-self "+sec) {
		t.Fatalf("owner's person known at start: %v, want exception-self", got)
	}
	p.SetOwner(sec, "pe_someone_else")
	// Another person's principal is silenced as intended.
	owner.Person = "pe_someone_else"
	if got := policyRun(t, p, []audit.Leaf{owner, svcRead(time.Minute, "10.20.0.5"), svcRead(time.Hour, "10.99.0.5")}); len(got) != 0 {
		t.Fatalf("alerts %v, want none: the exception applies to someone else's key", got)
	}
}

// TestConfigChangeAlerts: the detection configuration's digest recorded
// at a start that differs from the previous one raises an alert; the
// same digest again does not.
func TestConfigChangeAlerts(t *testing.T) {
	cfg := func(at time.Duration, digest string) audit.Leaf {
		return audit.Leaf{Time: t0.Add(at), Actor: "system", Action: detect.ActionConfig, Outcome: "ok", Digest: digest}
	}
	def, a := detect.DefaultDigest(), strings.Repeat("a", 64)
	if got := policyRun(t, nil, []audit.Leaf{cfg(0, def), cfg(time.Hour, def)}); len(got) != 0 {
		t.Fatalf("the default configuration twice: %v", got)
	}
	// Nothing recorded means the default ran: a first record of another
	// configuration is a change; the same one again is not.
	if got := policyRun(t, nil, []audit.Leaf{cfg(0, a), cfg(time.Hour, a)}); !slices.Equal(got, []string{"detection-config-changed "}) {
		t.Fatalf("a configuration other than the default, twice: %v", got)
	}
	if got := policyRun(t, nil, []audit.Leaf{cfg(0, def), cfg(time.Hour, a), cfg(2*time.Hour, def)}); len(got) != 2 {
		t.Fatalf("default, changed, back: %v, want two alerts", got)
	}
}

// TestKnownNetworkIsPerKind: the pipeline's range is known for services
// only; a staff member reading from it is not on a known network, and a
// service key used from the office is not either.
func TestKnownNetworkIsPerKind(t *testing.T) {
	p := &detect.Policy{KnownNetworks: []detect.KnownNetwork{
		{CIDR: "10.20.0.0/16", Name: "pipeline", Kinds: []string{"service"}},
		{CIDR: "192.0.2.0/24", Name: "office", Kinds: []string{"staff"}},
	}}
	staffRead := func(at time.Duration, tenant, src string) audit.Leaf {
		return audit.Leaf{Time: t0.Add(at), Actor: "pr_sam", ActorKind: "staff_support", Person: "pe_sam", KeyID: "ky_sam",
			Source: src, Action: "support.view", Tenant: tenant, Count: 50, Outcome: "ok"}
	}
	svc := func(at time.Duration, n int, src string) audit.Leaf {
		l := svcRead(at, src)
		l.Actor, l.KeyID, l.Tenant, l.ActorTenant = "pr_svc"+string(rune('a'+n)), "ky_svc"+string(rune('a'+n)), "tn_"+string(rune('a'+n)), "tn_"+string(rune('a'+n))
		return l
	}
	// Services on the pipeline: quiet. An engineer on the pipeline host
	// and two services there: a sweep.
	quiet := []audit.Leaf{svc(0, 0, "10.20.0.5"), svc(time.Minute, 1, "10.20.0.5"), svc(2*time.Minute, 2, "10.20.0.5")}
	if got := policyRun(t, p, quiet); len(got) != 0 {
		t.Fatalf("pipeline: %v", got)
	}
	sweep := append([]audit.Leaf{staffRead(0, "tn_x", "10.20.0.9")}, quiet...)
	sweep[1].Time, sweep[2].Time, sweep[3].Time = t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	if got := policyRun(t, p, sweep); !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "network-sweeps-tenants ") }) {
		t.Fatalf("an engineer on the pipeline network: %v, want network-sweeps-tenants", got)
	}
	// Staff from the office reading three tenants (three people): quiet.
	office := []audit.Leaf{staffRead(0, "tn_a", "192.0.2.10"), staffRead(time.Minute, "tn_b", "192.0.2.11"), staffRead(2*time.Minute, "tn_c", "192.0.2.12")}
	office[1].Actor, office[1].Person, office[2].Actor, office[2].Person = "pr_tess", "pe_tess", "pr_uma", "pe_uma"
	if got := policyRun(t, p, office); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "network-sweeps-tenants ") }) {
		t.Fatalf("three engineers in the office: %v", got)
	}
	// Without the office in the policy, three people on one network are
	// learned as a shared office: quiet too. One person reading three
	// tenants from a machine of their own is a sweep.
	if got := policyRun(t, nil, office); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "network-sweeps-tenants ") }) {
		t.Fatalf("three engineers on one network, no policy: %v", got)
	}
	alone := []audit.Leaf{staffRead(0, "tn_a", "203.0.113.7"), staffRead(time.Minute, "tn_b", "203.0.113.7"), staffRead(2*time.Minute, "tn_c", "203.0.113.7")}
	if got := policyRun(t, nil, alone); !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "network-sweeps-tenants ") }) {
		t.Fatalf("one engineer, three tenants, own machine: %v, want network-sweeps-tenants", got)
	}
}

// FuzzPolicy: any detection policy custos.json can hold is validated
// without panicking, and one that validates is applied to an event
// without panicking.
func FuzzPolicy(f *testing.F) {
	f.Add([]byte(`{"known_networks":[{"cidr":"10.20.0.0/16","name":"p","kinds":["service","staff"]}],"baseline_days":7}`))
	f.Add([]byte(`{"exceptions":[{"rule":"key-new-network","actor":"` + etl + `","owner":"` + sec + `","expires":"2026-11-24T00:00:00Z","reason":"r"}]}`))
	f.Add([]byte(`{"exceptions":[{"rule":"key-new-network","network":"::/0","owner":"` + sec + `","expires":"2026-11-24T00:00:00Z","reason":"r"}]}`))
	f.Add([]byte(`{"known_keys":[{"key":"ky_x","name":""}],"baseline_days":-1}`))
	rules, err := detect.DefaultRules()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p detect.Policy
		if json.Unmarshal(b, &p) != nil {
			return
		}
		if p.Validate(rules, t0) != nil {
			return
		}
		en := detect.NewEngine(rules)
		en.SetPolicy(&p)
		for i, l := range []audit.Leaf{svcRead(0, "10.20.0.5"), svcRead(time.Hour, "2001:db8::1"), svcRead(100*24*time.Hour, "")} {
			if _, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: l}); err != nil {
				t.Fatal(err)
			}
		}
		_ = p.Digest(rules)
	})
}

// TestPolicyNetworksFor: the ranges the vault binds service keys to are
// those known_networks lists for services — not the office's for staff.
func TestPolicyNetworksFor(t *testing.T) {
	p := &detect.Policy{KnownNetworks: []detect.KnownNetwork{
		{CIDR: "10.1.0.0/16", Name: "pipeline", Kinds: []string{"service"}},
		{CIDR: "192.0.2.0/24", Name: "office", Kinds: []string{"staff", "operator"}},
		{CIDR: "10.9.0.0/16", Name: "batch", Kinds: []string{"tenant_admin", "service"}},
	}}
	if got := fmt.Sprint(p.NetworksFor("service")); got != "[10.1.0.0/16 10.9.0.0/16]" {
		t.Errorf("service: %s", got)
	}
	if got := fmt.Sprint(p.NetworksFor("staff_support")); got != "[192.0.2.0/24]" {
		t.Errorf("staff_support: %s", got)
	}
	if got := (*detect.Policy)(nil).NetworksFor("service"); got != nil {
		t.Errorf("no policy: %v", got)
	}
}
