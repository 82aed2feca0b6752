package detect_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
)

// newSweep sets up the 2022 sweep: a support engineer with grants on
// two tenants and a leaked service key on a third read them from one
// laptop; network-sweeps-tenants fires and contains them; a security
// engineer resolves the alert. It returns the resolved alert and the
// laptop, and a function that runs the detector over the log.
type sweep struct {
	w        *world
	resolved *custos.Alert
	laptop   string
}

func newSweep(t *testing.T) (*sweep, func()) {
	t.Helper()
	w := newWorld(t)
	a, b, c := w.tenant("Acme", 2), w.tenant("Bolt", 2), w.tenant("Core", 2)
	staff, staffSecret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(a, staff)
	w.grant(b, staff)
	_, svc1 := w.principal(custos.KindService, c.id, "crm-sync")
	_, secSecret := w.principal(custos.KindStaffSecurity, "", "sec")
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
	var first *custos.Alert
	for _, al := range w.alerts() {
		if al.RuleID == "network-sweeps-tenants" {
			first = al
		}
	}
	if first == nil {
		t.Fatal("the sweep raised no alert")
	}
	resolved, err := w.vault.UpdateAlert(w.as(secSecret, "192.0.2.9"), first.ID, custos.AlertResolved, "contained; keys rotated")
	if err != nil {
		t.Fatal(err)
	}
	return &sweep{w: w, resolved: resolved, laptop: laptop}, func() { drain(t, w, det) }
}

func sweepAlerts(w *world) []*custos.Alert {
	var out []*custos.Alert
	for _, al := range w.alerts() {
		if al.RuleID == "network-sweeps-tenants" {
			out = append(out, al)
		}
	}
	return out
}

// TestResolvedAlertStaysResolved (issue 13, finding 6): evidence arriving
// for the window of a resolved alert — a second leaked key read a fourth
// tenant from the same laptop — does not touch the resolved alert: its
// status, evidence, principals, tenants and containment stay as resolved.
func TestResolvedAlertStaysResolved(t *testing.T) {
	s, drainAll := newSweep(t)
	w := s.w
	d := w.tenant("Dyn", 2)
	_, svc2 := w.principal(custos.KindService, d.id, "dyn-sync")
	drainAll()
	if _, err := w.vault.Tokens(w.as(svc2, s.laptop), d.id, d.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drainAll()
	var after *custos.Alert
	for _, al := range sweepAlerts(w) {
		if al.ID == s.resolved.ID {
			after = al
		}
	}
	if after == nil {
		t.Fatal("the resolved alert is gone")
	}
	if after.Status != custos.AlertResolved || !slices.Equal(after.Evidence, s.resolved.Evidence) || !slices.Equal(after.Actions, s.resolved.Actions) ||
		!slices.Equal(after.Principals, s.resolved.Principals) || !slices.Equal(after.Tenants, s.resolved.Tenants) {
		t.Fatalf("the resolved alert changed:\nbefore %+v\nafter  %+v", s.resolved, after)
	}
}

// TestNewEvidenceOpensNewAlertBeforeContaining (issue 13, finding 6): that
// later evidence opens a new alert — new id, the next generation of the
// dedup key — which contains what it brings in, and security's message
// about it precedes, in the outbox's delivery order, every notice of that
// containment. More evidence for the new, open alert is gathered into it,
// and what that contains is announced to security first too.
func TestNewEvidenceOpensNewAlertBeforeContaining(t *testing.T) {
	s, drainAll := newSweep(t)
	w := s.w
	d, e := w.tenant("Dyn", 2), w.tenant("Echo", 2)
	svc2p, svc2 := w.principal(custos.KindService, d.id, "dyn-sync")
	svc3p, svc3 := w.principal(custos.KindService, e.id, "echo-sync")
	drainAll()
	if _, err := w.vault.Tokens(w.as(svc2, s.laptop), d.id, d.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drainAll()
	alerts := sweepAlerts(w)
	if len(alerts) != 2 {
		t.Fatalf("%d sweep alerts, want the resolved one and a new one", len(alerts))
	}
	var second *custos.Alert
	for _, al := range alerts {
		if al.ID != s.resolved.ID {
			second = al
		}
	}
	if second.Status != custos.AlertOpen || second.Generation != 2 || second.DedupKey != s.resolved.DedupKey+"#2" || second.DedupBase != s.resolved.DedupKey {
		t.Fatalf("new alert %+v; want open, generation 2, dedup key %s#2", second, s.resolved.DedupKey)
	}
	if !slices.Equal(second.Principals, []string{svc2p.ID}) || !slices.Equal(second.Tenants, []string{d.id}) || len(second.Evidence) != 1 {
		t.Fatalf("new alert %+v; want the new read alone", second)
	}
	for _, want := range []string{"suspended " + svc2p.ID, "froze " + d.id} {
		if !slices.Contains(second.Actions, want) {
			t.Errorf("new alert's containment %v lacks %q", second.Actions, want)
		}
	}
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	if _, _, err := w.vault.Authenticate(ctx, svc2); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("the second leaked key still works: %v", err)
	}
	alertSeq, alertMsg := outboxFirst(t, w, "alert", second.ID)
	if alertSeq == 0 {
		t.Fatal("security got no message about the new alert")
	}
	if alertMsg.Data["dedup_key"] != second.DedupKey || !strings.Contains(alertMsg.Text, "suspended "+svc2p.ID) {
		t.Errorf("alert message %+v; want the new dedup key and what it contains", alertMsg)
	}
	if freezeSeq, _ := outboxFirst(t, w, "containment", second.ID); freezeSeq == 0 || freezeSeq < alertSeq {
		t.Errorf("the freeze notice (seq %d) is not after the alert's message (seq %d)", freezeSeq, alertSeq)
	}

	// The new alert is open: a third key from the laptop adds to it, and
	// security hears of the containment first.
	if _, err := w.vault.Tokens(w.as(svc3, s.laptop), e.id, e.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drainAll()
	if n := len(sweepAlerts(w)); n != 2 {
		t.Fatalf("%d sweep alerts after more evidence for the open one, want 2", n)
	}
	moreSeq, moreMsg := outboxLast(t, w, "alert", second.ID)
	if moreSeq <= alertSeq || moreMsg.Data["more_evidence"] != "true" || !strings.Contains(moreMsg.Text, "suspended "+svc3p.ID) {
		t.Fatalf("no message to security naming the containment of more evidence: %+v", moreMsg)
	}
	if freezeSeq, _ := outboxLast(t, w, "containment", second.ID); freezeSeq < moreSeq {
		t.Errorf("the freeze of %s (seq %d) was announced before security heard of it (seq %d)", e.id, freezeSeq, moreSeq)
	}
}

// outboxFirst and outboxLast return the first and last message of topic
// naming alertID (0 if none) and their delivery sequence.
func outboxFirst(t *testing.T, w *world, topic, alertID string) (int64, notify.Message) {
	return outboxAt(t, w, topic, alertID, "ASC")
}

func outboxLast(t *testing.T, w *world, topic, alertID string) (int64, notify.Message) {
	return outboxAt(t, w, topic, alertID, "DESC")
}

func outboxAt(t *testing.T, w *world, topic, alertID, order string) (int64, notify.Message) {
	t.Helper()
	var seq int64
	var payload string
	var m notify.Message
	err := w.db.Read.QueryRow(`SELECT seq, payload FROM outbox WHERE topic = $1 AND payload LIKE '%' || $2 || '%' ORDER BY seq `+order+` LIMIT 1`, topic, alertID).Scan(&seq, &payload)
	if err != nil {
		return 0, m
	}
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Fatal(err)
	}
	return seq, m
}
