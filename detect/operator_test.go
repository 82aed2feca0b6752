package detect_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/loadmix"
)

// operatorRules are the rules of detect/rules/operator.yaml.
var operatorRules = []string{"new-credential-export", "new-credential-bulk-read", "approver-created-by-beneficiary", "approval-by-sponsored", "self-approval-attempt"}

// TestOperatorPath: the issue 12 rules fire on the attack sequences and
// stay quiet on their near misses.
func TestOperatorPath(t *testing.T) {
	enroll := ev{who: "mal", kind: admin, action: "principal.enroll", tenant: "a", key: "ak_new"}
	read := func(action string, count int, at time.Duration) ev {
		return ev{who: "mal", kind: admin, action: action, tenant: "a", count: count, at: at, key: "ak_new"}
	}
	refused := func(action, reason string) ev {
		return ev{who: "sock", kind: admin, action: action, tenant: "a", outcome: "denied", code: "forbidden", reason: reason}
	}
	cases := []struct {
		name string
		evs  []ev
		want []string // the operator rules that fire, in order
	}{
		{"enroll then export", []ev{enroll, read("contact.export", 12, 10*time.Minute)}, []string{"new-credential-export"}},
		{"extra key then export", []ev{{who: "mal", kind: admin, action: "key.create", tenant: "a"}, read("contact.export", 12, 59*time.Minute)}, []string{"new-credential-export"}},
		{"enroll then export 2 h later", []ev{enroll, read("contact.export", 12, 2*time.Hour)}, nil},
		{"export, then a new key", []ev{read("contact.export", 12, 0), {who: "mal", kind: admin, action: "key.create", tenant: "a", at: 10 * time.Minute}}, nil},
		{"refused export after enroll", []ev{enroll, {who: "mal", kind: admin, action: "contact.export", tenant: "a", outcome: "denied", at: time.Minute}}, nil},
		{"someone else enrolled", []ev{enroll, {who: "ann", kind: admin, action: "contact.export", tenant: "a", at: time.Minute}}, nil},
		{"refused enrollment", []ev{{who: "mal", kind: admin, action: "principal.enroll", tenant: "a", outcome: "denied"}, read("contact.export", 12, time.Minute)}, nil},
		{"enroll then paged tokens", []ev{enroll, read("token.list", 500, time.Minute), read("token.list", 500, 2*time.Minute), read("token.list", 500, 3*time.Minute)}, []string{"new-credential-bulk-read"}},
		{"staff enroll then masked pages", []ev{{who: "sam", kind: staff, action: "principal.enroll"},
			{who: "sam", kind: staff, action: "support.view", tenant: "a", count: 400, at: 5 * time.Minute},
			{who: "sam", kind: staff, action: "support.view", tenant: "a", count: 400, at: 6 * time.Minute},
			{who: "sam", kind: staff, action: "support.view", tenant: "a", count: 400, at: 7 * time.Minute}}, []string{"new-credential-bulk-read"}},
		{"enroll then a small read", []ev{enroll, read("contact.list", 50, time.Minute), read("contact.read", 1, 2*time.Minute)}, nil},
		{"rows read before the enrollment do not count", []ev{read("contact.list", 500, 0), read("contact.list", 500, time.Minute), {who: "mal", kind: admin, action: "principal.enroll", tenant: "a", at: 2 * time.Minute}, read("contact.list", 10, 3*time.Minute)}, nil},
		{"rows read more than an hour after do not count", []ev{enroll, read("contact.list", 600, 30*time.Minute), read("contact.list", 600, 61*time.Minute)}, nil},
		{"approver created by beneficiary", []ev{refused("break_glass.approve", "approver was created by pr_mal's identity")}, []string{"approver-created-by-beneficiary"}},
		{"lift refused: approver created by the contained", []ev{refused("containment.lift", "approver was created by the identity that is contained")}, []string{"approver-created-by-beneficiary"}},
		{"approval refused for another reason", []ev{refused("principal.approve", "the principal is not pending")}, nil},
		{"the reason on another action", []ev{refused("contact.export", "approver was created by someone")}, nil},
		{"an approval that went through", []ev{{who: "sock", kind: admin, action: "support.decide", tenant: "a", reason: "approver was created by nobody"}}, nil},
		{"same person", []ev{refused("support.decide", "the same person holds both principals")}, []string{"self-approval-attempt"}},
		{"same person approves its own key change", []ev{refused("tenant_key.approve", "the same person cannot be both parties")}, []string{"self-approval-attempt"}},
		{"tenant admin's key change approved by one it created", []ev{refused("tenant_key.approve", "approver was created by the person it would approve for")}, []string{"approver-created-by-beneficiary"}},
		// An approval that went through, given by a principal enrolled on the
		// beneficiary's approval (vault.noteSponsored marks its detail).
		{"break-glass opened with a sponsored second approval", []ev{{who: "ben", kind: "staff_security", action: "break_glass.approve", tenant: "a",
			detail: "break-glass request ar_x; the approver was sponsored by the beneficiary granted: grant gr_x"}}, []string{"approval-by-sponsored"}},
		{"key change approved by the admin the requester sponsored", []ev{{who: "sock", kind: admin, action: "tenant_key.approve", tenant: "a",
			detail: "tenant keysets wrapped under the tenant's own key aws uri abc keyset def change kc_x; the approver was sponsored by the beneficiary"}}, []string{"approval-by-sponsored"}},
		{"a suspension lifted by one its holder sponsored", []ev{{who: "ivy", kind: "staff_security", action: "containment.lift",
			detail: "lift suspension of principal pr_mal; the approver was sponsored by the beneficiary"}}, []string{"approval-by-sponsored"}},
		{"an unmarked approval", []ev{{who: "ben", kind: "staff_security", action: "break_glass.approve", tenant: "a", detail: "break-glass request ar_x granted"}}, nil},
		{"the mark on a refused approval", []ev{{who: "ben", kind: "staff_security", action: "break_glass.approve", tenant: "a", outcome: "denied", code: "forbidden",
			detail: "break-glass request ar_x; the approver was sponsored by the beneficiary"}}, nil},
		{"the words on another action", []ev{{who: "ben", kind: "staff_security", action: "contact.export", tenant: "a", detail: "; the approver was sponsored by the beneficiary"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := slices.DeleteFunc(run(t, c.evs), func(r string) bool { return !slices.Contains(operatorRules, r) })
			if !slices.Equal(got, c.want) {
				t.Fatalf("fired %v, want %v", got, c.want)
			}
		})
	}
}

// TestBenignMixQuiet: the benign mix the benchmarks and custos-load replay
// raises exactly what it raised before the operator rules: none of them.
func TestBenignMixQuiet(t *testing.T) {
	all, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	before := slices.DeleteFunc(slices.Clone(all), func(r *detect.Rule) bool { return slices.Contains(operatorRules, r.ID) })
	fired := func(rules []*detect.Rule) []string {
		en := detect.NewEngine(rules)
		var out []string
		for i := range 20_000 {
			l := loadmix.Benign(i)
			l.Time = t0.Add(time.Duration(i) * 50 * time.Millisecond) // 1 000 s
			hits, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: l})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hits {
				if h.New {
					out = append(out, h.Rule.ID)
				}
			}
		}
		return out
	}
	got, want := fired(all), fired(before)
	if !slices.Equal(got, want) {
		t.Fatalf("with the operator rules the mix raised %d alerts, before %d", len(got), len(want))
	}
	t.Logf("the mix raised %d alerts with and without the operator rules", len(got))
}

// TestValueSum: a value_sum adds the field over the window, forgets what
// slid out of it, and its alert gathers later matches.
func TestValueSum(t *testing.T) {
	rules, err := detect.Parse(map[string][]byte{"r.yaml": []byte(`id: rows
title: rows
level: low
condition: event.action == "token.list"
correlation:
  type: value_sum
  field: count
  group_by: [actor]
  timespan: 10m
  condition: {gte: 100}
`)})
	if err != nil {
		t.Fatal(err)
	}
	en := detect.NewEngine(rules)
	var got []string
	for i, e := range []ev{
		{who: "a", action: "token.list", count: 60},
		{who: "a", action: "token.list", count: 30, at: 9 * time.Minute},
		{who: "b", action: "token.list", count: 30, at: 9 * time.Minute},  // another group
		{who: "a", action: "token.list", count: 30, at: 11 * time.Minute}, // 60 slid out: 60
		{who: "a", action: "token.list", count: 40, at: 12 * time.Minute}, // 100: fires
		{who: "a", action: "token.list", count: 1, at: 13 * time.Minute},  // more evidence
	} {
		hits, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: e.leaf()})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			got = append(got, h.Group)
			if h.New && !slices.Equal(h.Evidence, []uint64{1, 3, 4}) {
				t.Errorf("evidence %v, want the reads in the window", h.Evidence)
			}
			if h.New != (i == 4) {
				t.Errorf("entry %d: new = %v", i, h.New)
			}
		}
	}
	if !slices.Equal(got, []string{"pr_a", "pr_a"}) {
		t.Fatalf("hits %v", got)
	}
}

// TestNewCredentialExportTellsTenant: on the real stack, an enrollment
// followed by an export raises a high alert that tells the tenant and
// contains nothing; a refused approval whose approver the beneficiary
// created raises a critical one, also containing nothing. (The near
// misses are in TestOperatorPath: here every fixture principal enrolls
// within the test's hour.)
func TestNewCredentialExportTellsTenant(t *testing.T) {
	w := newWorld(t)
	a, b := w.tenant("Acme", 3), w.tenant("Bolt", 3)
	d := w.detector(defaultRules(t))
	drain(t, w, d)
	ctx := context.Background()
	// Acme's admin enrolled (vault.Enroll, in w.tenant) moments ago.
	if err := w.vault.Export(a.admin, a.id, a.list, "csv", func(*custos.Contact) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := w.log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: custos.RequestFromContext(b.admin).Principal.ID, ActorKind: "tenant_admin",
		Tenant: b.id, Action: "support.decide", Outcome: audit.OutcomeDenied, Code: custos.EFORBIDDEN, Reason: "approver was created by the requester's identity"}}); err != nil {
		t.Fatal(err)
	}
	drain(t, w, d)

	got := map[string]*struct{ level, tenants, actions string }{}
	for _, al := range w.alerts() {
		if slices.Contains(operatorRules, al.RuleID) {
			if got[al.RuleID] != nil {
				t.Fatalf("two %s alerts", al.RuleID)
			}
			got[al.RuleID] = &struct{ level, tenants, actions string }{al.Severity, strings.Join(al.Tenants, " "), strings.Join(al.Actions, "; ")}
		}
	}
	want := map[string]*struct{ level, tenants, actions string }{
		"new-credential-export":           {"high", a.id, "told " + a.id},
		"approver-created-by-beneficiary": {"critical", b.id, "told " + b.id},
	}
	if len(got) != len(want) {
		t.Fatalf("operator alerts %v, want %v", ruleSet(got), ruleSet(want))
	}
	for r, wa := range want {
		if g := got[r]; g == nil || *g != *wa {
			t.Errorf("%s: got %+v, want %+v", r, g, wa)
		}
	}
	// Nothing contained: the admins are not suspended, the tenants not frozen.
	var suspended int
	if err := w.db.Read.QueryRow(`SELECT count(*) FROM principals WHERE suspended = 1`).Scan(&suspended); err != nil || suspended != 0 {
		t.Errorf("%d principals suspended (%v), want none", suspended, err)
	}
	if err := w.vault.Export(a.admin, a.id, a.list, "csv", func(*custos.Contact) error { return nil }); err != nil {
		t.Errorf("export after the alert: %v", err)
	}
	// Each tenant is told once, by a message addressed to its admins.
	for _, f := range []*tenantFix{a, b} {
		var n int
		if err := w.db.Read.QueryRow(`SELECT count(*) FROM outbox WHERE topic = 'alert.tenant' AND tenant_id = $1 AND payload LIKE '%tenant_admins%'`, f.id).Scan(&n); err != nil || n != 1 {
			t.Errorf("tenant %s told %d times (%v), want once", f.id, n, err)
		}
	}
}

func ruleSet[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
