package detect_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type world struct {
	t     *testing.T
	db    *store.DB
	log   *audit.Log
	vault *vault.Vault
	op    context.Context
	// approvers decide enrollments that wait for a second party.
	approvers enrolltest.Approvers
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := newWorldB(t)
	w.t = t
	_, secret, err := w.vault.Bootstrap(context.Background(), "op", "op@vendor.test")
	if err != nil {
		t.Fatal(err)
	}
	w.op = w.as(secret, "192.0.2.1")
	w.approvers = enrolltest.Approvers{V: w.vault}
	w.approvers.Add(w.op)
	return w
}

// newWorldB opens a database, a log and a vault (no principals yet).
func newWorldB(t testing.TB) *world {
	t.Helper()
	st := vaulttest.Open(t, vault.Options{})
	return &world{db: st.DB, log: st.Log, vault: st.Vault}
}

// as authenticates secret as a request from src.
func (w *world) as(secret, src string) context.Context {
	w.t.Helper()
	return enrolltest.As(w.t, w.vault, secret, src)
}

func (w *world) principal(kind custos.Kind, tenant, name string) (*custos.Principal, string) {
	w.t.Helper()
	p := &custos.Principal{Kind: kind, TenantID: tenant, Name: name, Owner: name, Identity: name + "@corp.test"}
	e, err := w.vault.CreatePrincipal(w.op, p)
	if err != nil {
		w.t.Fatal(err)
	}
	w.approvers.Settle(w.t, e)
	secret := enrolltest.Key(w.t, w.vault, e.ID, custos.KeyRequest{})
	if kind == custos.KindStaffSecurity || kind == custos.KindTenantAdmin || kind == custos.KindOperator {
		w.approvers.Add(w.as(secret, "192.0.2.1"))
	}
	return p, secret
}

type tenantFix struct {
	id, list string
	admin    context.Context
	tokens   []string
}

func (w *world) tenant(name string, contacts int) *tenantFix {
	w.t.Helper()
	tn := &custos.Tenant{Name: name}
	e, err := w.vault.CreateTenant(w.op, tn, strings.ToLower(strings.ReplaceAll(name, " ", "-"))+"-admin@corp.test")
	if err != nil {
		w.t.Fatal(err)
	}
	f := &tenantFix{id: tn.ID, admin: w.as(enrolltest.Key(w.t, w.vault, e.ID, custos.KeyRequest{}), "198.51.100.1")}
	w.approvers.Add(f.admin)
	l := &custos.List{TenantID: tn.ID, Name: "news"}
	if err := w.vault.CreateList(f.admin, l); err != nil {
		w.t.Fatal(err)
	}
	f.list = l.ID
	for i := range contacts {
		c := &custos.Contact{TenantID: tn.ID, ListID: l.ID, Email: strings.ToLower(name) + string(rune('a'+i)) + "@example.org"}
		if err := w.vault.CreateContact(f.admin, c); err != nil {
			w.t.Fatal(err)
		}
		f.tokens = append(f.tokens, c.Token)
	}
	if err := w.vault.SetSupportSettings(f.admin, tn.ID, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		w.t.Fatal(err)
	}
	return f
}

func (w *world) grant(f *tenantFix, staff *custos.Principal) {
	w.t.Helper()
	g := &custos.Grant{TenantID: f.id, StaffID: staff.ID, Scope: custos.ScopeViewMaskedReveal}
	if err := w.vault.CreateGrant(f.admin, g, time.Hour); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) detector(rules []*detect.Rule) *detect.Detector {
	w.t.Helper()
	ci, err := w.vault.CanaryIndex(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return &detect.Detector{Log: w.log, Read: w.db.Read, Write: w.db.Write, Rules: rules, Canaries: ci, Rows: w.vault.Rows()}
}

// drain runs the detector until it has evaluated the whole log.
func drain(t *testing.T, w *world, d *detect.Detector) {
	t.Helper()
	ctx := context.Background()
	w.log.Sync(ctx)
	for {
		n, err := d.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && d.Next() >= w.log.Size() {
			return
		}
	}
}

func (w *world) alerts() []*custos.Alert {
	w.t.Helper()
	sec, secret := w.principal(custos.KindStaffSecurity, "", "sec-"+custos.NewID("x")[22:])
	_ = sec
	as, err := w.vault.Alerts(w.as(secret, "192.0.2.2"), "")
	if err != nil {
		w.t.Fatal(err)
	}
	return as
}

func defaultRules(t *testing.T) []*detect.Rule {
	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestIncident2022: a support engineer with grants on two tenants and a
// leaked service key on a third sweeps from one machine: the alert fires,
// containment applies, the evidence is provable.
func TestIncident2022(t *testing.T) {
	w := newWorld(t)
	a, b, c := w.tenant("Acme", 3), w.tenant("Bolt", 3), w.tenant("Core", 3)
	staff, staffSecret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(a, staff)
	w.grant(b, staff)
	_, svcSecret := w.principal(custos.KindService, c.id, "crm-sync")
	d := w.detector(defaultRules(t))
	drain(t, w, d) // the setup is history
	before := len(w.alerts())

	const laptop = "203.0.113.50"
	sam := w.as(staffSecret, laptop)
	for _, f := range []*tenantFix{a, b} {
		if _, err := w.vault.SupportContacts(sam, f.id, f.list, "", 50); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.vault.Tokens(w.as(svcSecret, laptop), c.id, c.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drain(t, w, d)

	var got *custos.Alert
	for _, al := range w.alerts()[:len(w.alerts())-before] {
		if al.RuleID == "network-sweeps-tenants" {
			got = al
		}
	}
	if got == nil {
		t.Fatalf("no network-sweeps-tenants alert; alerts: %v", ruleIDs(w.alerts()))
	}
	if got.Severity != "critical" || len(got.Tenants) != 3 || len(got.Evidence) != 3 || !slices.Contains(got.Principals, staff.ID) {
		t.Fatalf("alert %+v", got)
	}
	for _, want := range []custos.ContainmentAction{
		{Kind: custos.ContainSuspend, Principal: staff.ID},
		{Kind: custos.ContainFreeze, Tenant: a.id},
		{Kind: custos.ContainFreeze, Tenant: c.id},
	} {
		if !slices.Contains(parseActions(t, got.Actions), want) {
			t.Errorf("containment lacks %v: %v", want, got.Actions)
		}
	}
	// Contained: the engineer's key no longer works, the tenants' exports stop.
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	if _, _, err := w.vault.Authenticate(ctx, staffSecret); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Errorf("suspended engineer authenticated: %v", err)
	}
	if _, _, err := w.vault.Authenticate(ctx, svcSecret); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Errorf("leaked service key still works: %v", err)
	}
	if err := w.vault.Export(a.admin, a.id, a.list, "csv", func(*custos.Contact) error { return nil }); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("export from a frozen tenant: %v", err)
	}
	// Each piece of evidence is an entry of the log, provable.
	w.log.Sync(context.Background())
	size := w.log.Size()
	root, _ := w.log.TreeHash(context.Background(), size)
	for _, i := range got.Evidence {
		st, err := w.log.Entries(context.Background(), i, 1)
		if err != nil {
			t.Fatal(err)
		}
		p, err := w.log.InclusionProof(context.Background(), i, size)
		if err != nil || tlog.CheckRecord(p, int64(size), root, int64(i), tlog.RecordHash(st[0].Leaf)) != nil {
			t.Fatalf("evidence %d not provable: %v", i, err)
		}
	}
	// The alert went to the outbox for delivery, with its dedup key.
	var payload string
	if err := w.db.Read.QueryRow(`SELECT payload FROM outbox WHERE topic = 'alert' AND payload LIKE '%' || $1 || '%'`, got.ID).Scan(&payload); err != nil {
		t.Fatalf("alert not in the outbox: %v", err)
	}
	var m notify.Message
	json.Unmarshal([]byte(payload), &m)
	if m.Data["dedup_key"] != got.DedupKey || m.Severity != notify.SeverityCritical {
		t.Fatalf("alert message %+v", m)
	}
	// Each frozen tenant's admins are told.
	var told int
	if err := w.db.Read.QueryRow(`SELECT count(*) FROM outbox WHERE topic = 'containment' AND payload LIKE '%' || $1 || '%'`, got.ID).Scan(&told); err != nil || told != 3 {
		t.Fatalf("%d tenants told of the freeze (%v), want 3", told, err)
	}
}

// TestLaterEvidenceIsContainedToo: after the sweep alert fired, a second
// leaked key from the same machine reads a fourth tenant within the hour:
// no new alert, but that key and tenant are contained like the first.
func TestLaterEvidenceIsContainedToo(t *testing.T) {
	w := newWorld(t)
	a, b, c, dd := w.tenant("Acme", 2), w.tenant("Bolt", 2), w.tenant("Core", 2), w.tenant("Dyn", 2)
	staff, staffSecret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(a, staff)
	w.grant(b, staff)
	_, svc1 := w.principal(custos.KindService, c.id, "crm-sync")
	svc2p, svc2 := w.principal(custos.KindService, dd.id, "dyn-sync")
	det := w.detector(defaultRules(t))
	drain(t, w, det)
	const laptop = "203.0.113.50"
	for _, f := range []*tenantFix{a, b} {
		if _, err := w.vault.SupportContacts(w.as(staffSecret, laptop), f.id, f.list, "", 50); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.vault.Tokens(w.as(svc1, laptop), c.id, c.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drain(t, w, det)
	if _, err := w.vault.Tokens(w.as(svc2, laptop), dd.id, dd.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drain(t, w, det)
	var sweep *custos.Alert
	n := 0
	for _, al := range w.alerts() {
		if al.RuleID == "network-sweeps-tenants" {
			sweep = al
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d sweep alerts, want one that gathered the later evidence", n)
	}
	for _, want := range []custos.ContainmentAction{{Kind: custos.ContainSuspend, Principal: svc2p.ID}, {Kind: custos.ContainFreeze, Tenant: dd.id}} {
		if !slices.Contains(parseActions(t, sweep.Actions), want) {
			t.Errorf("alert actions %v lack %v", sweep.Actions, want)
		}
	}
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	if _, _, err := w.vault.Authenticate(ctx, svc2); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("the second leaked key still works: %v", err)
	}
}

func ruleIDs(as []*custos.Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.RuleID)
	}
	return out
}

// TestRestartExactlyOnce: detectors started and stopped mid-stream (and
// one that evaluated without saving, as a crash would) together evaluate
// every entry exactly once: an alert that collects every contact read
// holds each read's index once, and no other.
func TestRestartExactlyOnce(t *testing.T) {
	rules, err := detect.Parse(map[string][]byte{"r.yaml": []byte(`id: every-read
title: every read
level: low
condition: event.action == "contact.read"
correlation:
  type: event_count
  group_by: [action]
  timespan: 744h
  condition: {gte: 1}
`)})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	f := w.tenant("Acme", 5)
	ctx := context.Background()
	var reads []uint64
	step := 0
	for round := range 6 {
		for i := range 7 {
			if i%3 == 0 {
				if _, err := w.vault.Tokens(f.admin, f.id, f.list, "", 10); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := w.vault.Contact(f.admin, f.id, f.tokens[i%5]); err != nil {
				t.Fatal(err)
			}
		}
		w.log.Sync(ctx)
		// A fresh detector each round: a restart. Every other round it
		// stops after one small batch without saving (a crash).
		d := w.detector(rules)
		d.Batch = 3 + round
		if round%2 == 1 {
			if _, err := d.Step(ctx); err != nil {
				t.Fatal(err)
			}
			step++
			continue
		}
		drain(t, w, d)
	}
	drain(t, w, w.detector(rules))
	for i := range w.log.Size() {
		data, _ := w.log.Entry(ctx, i)
		if strings.Contains(string(data), `"action":"contact.read"`) && !strings.Contains(string(data), `"actor":"detector"`) {
			reads = append(reads, i)
		}
	}
	var got *custos.Alert
	for _, a := range w.alerts() {
		if a.RuleID == "every-read" {
			if got != nil {
				t.Fatal("two alerts for one window: an event was evaluated twice")
			}
			got = a
		}
	}
	if got == nil {
		t.Fatal("no alert")
	}
	slices.Sort(got.Evidence)
	if !slices.Equal(got.Evidence, reads) {
		t.Fatalf("evidence %v\nreads    %v", got.Evidence, reads)
	}
}

// TestTamperedLogAlerts: a changed leaf row stops the detector at that
// entry and raises the integrity alert.
func TestTamperedLogAlerts(t *testing.T) {
	w := newWorld(t)
	f := w.tenant("Acme", 2)
	d := w.detector(defaultRules(t))
	drain(t, w, d)
	drain(t, w, d) // and what the first pass's alerts appended (queued mode integrates it later)
	if _, err := w.vault.Contact(f.admin, f.id, f.tokens[0]); err != nil {
		t.Fatal(err)
	}
	w.log.Sync(context.Background())
	idx := w.log.Size() - 1
	if _, err := w.db.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = $2`, []byte(`{"action":"nothing to see"}`), int64(idx)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Step(context.Background()); err == nil {
		t.Fatal("the detector read past a tampered entry")
	}
	if d.Next() != idx {
		t.Fatalf("cursor at %d, want it stopped at the tampered entry %d", d.Next(), idx)
	}
	if !slices.Contains(ruleIDs(w.alerts()), "log-integrity") {
		t.Fatalf("alerts %v, want log-integrity", ruleIDs(w.alerts()))
	}
}

// TestCanaryRevealContains: staff revealing a canary is critical and ends
// the grant; a tenant admin reading it is not an alert.
func TestCanaryRevealContains(t *testing.T) {
	w := newWorld(t)
	f := w.tenant("Acme", 2)
	ci, _ := w.vault.CanaryIndex(context.Background())
	tags, _ := ci.Tags(context.Background())
	page, err := w.vault.Contacts(f.admin, f.id, f.list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	canary := ""
	for _, c := range page.Items {
		if tags[ci.Tag(c.Token)] {
			canary = c.Token
		}
	}
	if canary == "" {
		t.Fatal("no canary in the list")
	}
	staff, secret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(f, staff)
	d := w.detector(defaultRules(t))
	drain(t, w, d)
	if rs := ruleIDs(w.alerts()); slices.Contains(rs, "canary-read") {
		t.Fatalf("the tenant admin's own listing raised %v", rs)
	}
	if _, err := w.vault.Reveal(w.as(secret, "203.0.113.5"), f.id, canary, custos.ReasonDebugging, "checking: checking the reported bounce"); err != nil {
		t.Fatal(err)
	}
	drain(t, w, d)
	if rs := ruleIDs(w.alerts()); !slices.Contains(rs, "canary-read") {
		t.Fatalf("alerts %v, want canary-read", rs)
	}
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	if _, _, err := w.vault.Authenticate(ctx, secret); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("the engineer still authenticates after revealing a canary: %v", err)
	}
}

// TestSigningFailureAlerts: a checkpoint the log could not sign reaches
// the rules as a system entry.
func TestSigningFailureAlerts(t *testing.T) {
	w := newWorld(t)
	d := w.detector(defaultRules(t))
	drain(t, w, d)
	d.Observe("log.checkpoint", errors.New("sign checkpoint: KMS unreachable"))
	drain(t, w, d)
	if !slices.Contains(ruleIDs(w.alerts()), "log-integrity") {
		t.Fatalf("alerts %v, want log-integrity", ruleIDs(w.alerts()))
	}
}

// parseActions reads an alert's stored actions back as values; text that
// names no action fails t.
func parseActions(t *testing.T, acts []string) []custos.ContainmentAction {
	t.Helper()
	out := make([]custos.ContainmentAction, len(acts))
	for i, s := range acts {
		a, ok := custos.ParseContainmentAction(s)
		if !ok {
			t.Fatalf("alert action %q names no containment", s)
		}
		out[i] = a
	}
	return out
}
