package detect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/custos-dev/custos/internal/racing"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/notify"
)

// runLevels is run returning the rules that fired at medium or above.
func runLevels(t *testing.T, evs []ev) []string {
	t.Helper()
	rules := defaultRules(t)
	level := map[string]string{}
	for _, r := range rules {
		level[r.ID] = r.Level
	}
	var out []string
	for _, id := range run(t, evs) {
		if slices.Index(detect.Levels, level[id]) >= slices.Index(detect.Levels, "medium") {
			out = append(out, id)
		}
	}
	return out
}

// relayWeek is a vendor pipeline's normal relay traffic for two tenants
// from its one network: each day it lists the tokens, then sends one
// campaign of n recipients per tenant to its usual list — canary
// recipients, unsubscribed and unknown tokens included — and bounces come
// back as system suppressions. The first day is each key's first send.
func relayWeek(days, n int) []ev {
	var out []ev
	for d := range days {
		day := time.Duration(d) * 24 * time.Hour
		for _, tn := range []string{"a", "b"} {
			who, list := "pipe"+tn, "ls_"+tn
			out = append(out, ev{who: who, kind: service, action: "token.list", tenant: tn, count: 500, at: day})
			msg, tmpl := fmt.Sprintf("ms_%s%d", tn, d), fmt.Sprintf("tmpl_%s%d", tn, d)
			c := campaign(who, tn, list, msg, tmpl, day+time.Minute, n)
			c[7].tokens = []string{"ct_canary"} // resolved, never delivered
			for i := 100; i < 160; i++ {        // a run of refusals
				c[i].outcome, c[i].code, c[i].reason = "rejected", "invalid", "unsubscribed"
			}
			c[200].outcome, c[200].code, c[200].reason = "rejected", "invalid", "unknown_token"
			out = append(out, c...)
			for i := range 25 {
				out = append(out, ev{who: "system", action: "contact.suppress", tenant: tn, list: list, reason: "bounced",
					tokens: []string{fmt.Sprintf("ct_%s%d", list, i)}, at: day + time.Hour + time.Duration(i)*time.Second})
			}
		}
	}
	// The tenant admin sends a test of the next campaign to itself.
	return append(out, ev{who: "ann", kind: admin, action: "contact.send", tenant: "a", list: "ls_a", msg: "ms_test", tmpl: "tmpl_test",
		tokens: []string{"ct_ls_a1"}, at: time.Duration(days) * 24 * time.Hour})
}

// TestRelayTrafficQuiet: a week of normal campaigns of 5 000 recipients
// from the pipeline's service keys to their usual lists raises nothing at
// medium or above — neither the send rules nor the read rules (a send
// resolves canaries and follows a token listing: counted as a read it
// would be canary-read and service-new-pattern).
func TestRelayTrafficQuiet(t *testing.T) {
	if got := runLevels(t, relayWeek(5, 5000)); len(got) > 0 {
		t.Fatalf("normal relay traffic raised %v", got)
	}
}

// TestRelayAttacks: the same week, then one of the patterns the send
// rules are for: each raises its rule and nothing else at medium or above.
func TestRelayAttacks(t *testing.T) {
	if racing.Enabled {
		t.Skip("a week of relay traffic replayed through the rules on one goroutine: no concurrency for the race detector, minutes under it")
	}
	day5 := 5 * 24 * time.Hour
	for _, c := range []struct {
		name   string
		attack []ev
		want   []string
	}{
		{"another list", campaign("pipea", "a", "ls_vip", "ms_x", "tmpl_x", day5, 300), []string{"send-new-list"}},
		{"one message for both tenants", append(campaign("pipea", "a", "ls_a", "ms_x", "tmpl_x", day5, 300), campaign("pipeb", "b", "ls_b", "ms_y", "tmpl_x", day5+time.Hour, 300)...),
			[]string{"send-cross-tenant-template"}},
		{"the whole base in an hour", campaign("pipea", "a", "ls_a", "ms_x", "tmpl_x", day5, 50_001), []string{"send-volume-spike"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := runLevels(t, append(relayWeek(5, 5000), c.attack...)); !slices.Equal(got, c.want) {
				t.Fatalf("fired %v, want %v", got, c.want)
			}
		})
	}
}

// TestCrossTenantTemplateEvidence: the alert carries the first entry of
// each tenant the template reached, and both tenants.
func TestCrossTenantTemplateEvidence(t *testing.T) {
	en := detect.NewEngine(defaultRules(t))
	evs := append(campaign("pipa", "a", "ls_a", "ms_1", "t1", 0, 3), campaign("pipb", "b", "ls_b", "ms_2", "t1", time.Hour, 3)...)
	var got []detect.Hit
	for i, e := range evs {
		hits, err := en.Evaluate(&detect.Event{Index: uint64(100 + i), Leaf: e.leaf()})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.Rule.ID == "send-cross-tenant-template" {
				got = append(got, h)
			}
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d hits, want one (the first send for the second tenant)", len(got))
	}
	if h := got[0]; !h.New || !slices.Equal(h.Evidence, []uint64{100, 103}) || !slices.Equal(h.Tenants, []string{"tn_a", "tn_b"}) || !slices.Equal(h.Principals, []string{"pr_pipb"}) {
		t.Fatalf("hit %+v", h)
	}
}

// TestSendStateBounded: the send history the state keeps (and saves with
// the cursor every second) stays bounded: a flood of one-off templates
// and a key sending every hour for weeks.
func TestSendStateBounded(t *testing.T) {
	en := detect.NewEngine(defaultRules(t))
	i := 0
	feed := func(e ev) {
		if _, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: e.leaf()}); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for n := range 30_000 {
		feed(ev{who: "pipe", kind: service, action: "contact.send", tenant: "a", list: "ls_a", msg: fmt.Sprintf("ms_%d", n), tmpl: fmt.Sprintf("t%d", n),
			tokens: []string{"ct_1"}, at: time.Duration(n) * time.Millisecond})
	}
	if n := len(en.State.Templates); n > 10_000 || n < 5_000 {
		t.Errorf("%d templates remembered after 30 000 one-off templates within a minute, want at most 10 000 (and the recent ones)", n)
	}
	for h := range 24 * 21 {
		feed(ev{who: "pipe", kind: service, action: "contact.send", tenant: "a", list: "ls_a", msg: "ms_x", tmpl: "tx",
			tokens: []string{"ct_1"}, at: time.Minute + time.Duration(h)*time.Hour})
	}
	if n := len(en.State.Sends["ak_pipe"]); n > 7*24 {
		t.Errorf("%d hourly buckets kept for one key, want at most a week's", n)
	}
	b, err := json.Marshal(en.State)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state after the flood: %d bytes", len(b))
}

// TestCanaryMailAlerts: on the real stack, mail to an export's canary
// raises a critical alert in the detector's next step whose message names
// the exporter and the evidence; the tenant is told; nobody is contained.
func TestCanaryMailAlerts(t *testing.T) {
	w := newWorld(t)
	f := w.tenant("Acme", 3)
	_, secSecret := w.principal(custos.KindStaffSecurity, "", "sec")
	sec := w.as(secSecret, "192.0.2.3")
	d := w.detector(defaultRules(t))
	drain(t, w, d)
	var rows []string
	if err := w.vault.Export(f.admin, f.id, f.list, "csv", func(c *custos.Contact) error { rows = append(rows, c.Email); return nil }); err != nil {
		t.Fatal(err)
	}
	drain(t, w, d)
	before := len(w.alerts())
	watermark := ""
	for _, e := range rows {
		if tr, err := w.vault.Trace(sec, e); err == nil && tr.Kind == custos.TraceExport {
			watermark = e
			break
		}
	}
	if watermark == "" {
		t.Fatal("no export canary in the export")
	}
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: "198.51.100.7"})
	ev := &custos.TrapEvidence{ID: custos.NewID(custos.PrefixEvidence), RemoteIP: "198.51.100.7", HELO: "bad.test", MailFrom: "phisher@bad.test"}
	hit, err := w.vault.CanaryMail(ctx, watermark, ev, []byte("Subject: hello\r\n\r\nclick\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	exporter := custos.PrincipalFromContext(f.admin).ID
	if hit.Trace.Principal != exporter {
		t.Fatalf("hit names exporter %s, want %s", hit.Trace.Principal, exporter)
	}
	w.log.Sync(context.Background())
	if _, err := d.Step(context.Background()); err != nil { // one step: nothing waits for more entries
		t.Fatal(err)
	}
	var got *custos.Alert
	for _, a := range w.alerts()[:len(w.alerts())-before] {
		if a.RuleID == "canary-mail" {
			got = a
		}
	}
	if got == nil {
		t.Fatalf("no canary-mail alert after the detector's step (alerts %v)", ruleIDs(w.alerts()))
	}
	if got.Severity != "critical" || !slices.Equal(got.Tenants, []string{f.id}) {
		t.Errorf("alert %+v", got)
	}
	var payload string
	if err := w.db.Read.QueryRow(`SELECT payload FROM outbox WHERE topic = 'alert' AND payload LIKE '%' || $1 || '%'`, got.ID).Scan(&payload); err != nil {
		t.Fatalf("alert not in the outbox: %v", err)
	}
	var m notify.Message
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{exporter, ev.ID, "export"} {
		if !strings.Contains(m.Text, want) || !strings.Contains(m.Data["detail"], want) {
			t.Errorf("alert message %q (detail %q) does not name %s", m.Text, m.Data["detail"], want)
		}
	}
	if m.Severity != notify.SeverityCritical {
		t.Errorf("message severity %s", m.Severity)
	}
	for _, not := range []string{watermark, "phisher", "hello"} {
		if strings.Contains(payload, not) {
			t.Errorf("alert message holds %q: %s", not, payload)
		}
	}
	var told string
	if err := w.db.Read.QueryRow(`SELECT payload FROM outbox WHERE topic = 'alert.tenant' AND payload LIKE '%' || $1 || '%'`, got.ID).Scan(&told); err != nil {
		t.Fatalf("tenant not told: %v", err)
	}
	if !strings.Contains(told, ev.ID) || !strings.Contains(told, exporter) {
		t.Errorf("tenant message %s does not name the export and evidence", told)
	}
	for _, a := range parseActions(t, got.Actions) {
		if a.Kind != custos.ContainNotify {
			t.Errorf("canary mail contained %v", a)
		}
	}
	if err := w.vault.Export(f.admin, f.id, f.list, "csv", func(*custos.Contact) error { return nil }); err != nil {
		t.Errorf("the exporter was contained: %v", err)
	}
}
