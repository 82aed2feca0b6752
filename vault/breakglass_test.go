package vault_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// lastLeaf returns the newest leaf of action, as stored.
func lastLeaf(t *testing.T, f *fixture, action custos.Action) string {
	t.Helper()
	f.log.Sync(context.Background())
	var data []byte
	if err := f.db.Read.QueryRow(`SELECT data FROM audit_leaves WHERE action = $1 ORDER BY idx DESC LIMIT 1`, string(action)).Scan(&data); err != nil {
		t.Fatalf("leaf of %s: %v", action, err)
	}
	return string(data)
}

// outbox returns the messages in the notification outbox, oldest first.
func outbox(t *testing.T, f *fixture) []notify.Message {
	t.Helper()
	rows, err := f.db.Read.Query(`SELECT payload FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []notify.Message
	for rows.Next() {
		var p string
		var m notify.Message
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func topics(ms []notify.Message) string {
	var s []string
	for _, m := range ms {
		if strings.HasPrefix(m.Topic, "principal.") {
			continue // setting the principals up; identity_test.go checks those
		}
		s = append(s, m.Topic+"→"+strings.Join(m.To, "+"))
	}
	return strings.Join(s, " ")
}

func TestBreakGlass(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "jane.doe@gmail.com"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	samSec, _ := f.principal(t, custos.KindStaffSecurity, "", "sam") // the requester's own security principal
	sec1, s1 := f.principal(t, custos.KindStaffSecurity, "", "ana")
	sec1b, _ := f.principal(t, custos.KindStaffSecurity, "", "ana") // ana's second principal
	sec2, s2 := f.principal(t, custos.KindStaffSecurity, "", "ben")
	req := func(d time.Duration) *custos.AccessRequest {
		return &custos.AccessRequest{TenantID: tenant, Reason: "outage: sends failing", Ticket: "INC-77", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(d)}
	}

	// Only where the tenant allows it; support access on is not enough.
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "break-glass the tenant does not allow", f.vault.RequestBreakGlass(staff, req(time.Hour)), custos.EFORBIDDEN)
	if !strings.Contains(lastLeaf(t, f, custos.ActionBreakGlass), `"severity":"high"`) {
		t.Error("a refused break-glass request is not a high-severity entry")
	}
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, BreakGlass: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "break-glass longer than an hour", f.vault.RequestBreakGlass(staff, req(2*time.Hour)), custos.EINVALID)
	r := req(time.Hour)
	if err := f.vault.RequestBreakGlass(staff, r); err != nil {
		t.Fatal(err)
	}
	// The tenant does not approve break-glass; security staff do, two of them.
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("tenant admin approving break-glass: %v", err)
	}
	if _, _, err := f.vault.ApproveBreakGlass(staff, tenant, r.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("support staff approving break-glass: %v", err)
	}
	if _, _, err := f.vault.ApproveBreakGlass(samSec, tenant, r.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("the requester approving under another principal: %v", err)
	}
	rq, g, err := f.vault.ApproveBreakGlass(sec1, tenant, r.ID)
	if err != nil || g != nil || len(rq.ApprovedBy) != 1 || rq.ApprovedBy[0] != s1.ID {
		t.Fatalf("first approval: %+v, %+v, %v; want one approval and no grant yet", rq, g, err)
	}
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 10); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("staff reading after one approval: %v", err)
	}
	if rs, err := f.vault.AccessRequests(admin, tenant); err != nil || len(rs) != 1 || !rs[0].BreakGlass || len(rs[0].ApprovedBy) != 1 || rs[0].ApprovedBy[0] != s1.ID {
		t.Fatalf("the tenant's view of the break-glass request: %+v, %v; want it pending with one approval", rs, err)
	}
	for _, again := range []context.Context{sec1, sec1b} {
		if _, _, err := f.vault.ApproveBreakGlass(again, tenant, r.ID); custos.ErrorCode(err) != custos.ECONFLICT {
			t.Fatalf("the same approver (same owner) approving twice: %v", err)
		}
	}
	rq, g, err = f.vault.ApproveBreakGlass(sec2, tenant, r.ID)
	if err != nil || g == nil {
		t.Fatalf("second approval: %v", err)
	}
	if !g.BreakGlass || g.StaffID != sp.ID || g.ExpiresAt.Sub(g.StartsAt) != time.Hour || rq.Status != custos.RequestApproved || rq.ApprovedBy[1] != s2.ID {
		t.Fatalf("break-glass grant %+v, request %+v", g, rq)
	}
	leaf := lastLeaf(t, f, custos.ActionBreakGlassOK)
	if !strings.Contains(leaf, `"severity":"high"`) || !strings.Contains(leaf, "granted: grant "+g.ID) {
		t.Fatalf("the grant's leaf: %s", leaf)
	}
	// The tenant is told at once, with high severity.
	var told bool
	for _, m := range outbox(t, f) {
		if m.Topic == "break_glass.granted" && m.TenantID == tenant && m.Severity == notify.SeverityHigh && m.To[0] == notify.ToTenantAdmins && strings.Contains(m.Text, g.ID) {
			told = true
		}
		if strings.Contains(m.Text, "jane") || strings.Contains(m.Text, "outage") {
			t.Errorf("a notification carries personal data or free text: %q", m.Text)
		}
	}
	if !told {
		t.Fatalf("the tenant was not notified of the break-glass grant: %s", topics(outbox(t, f)))
	}
	if _, err := f.vault.Reveal(staff, tenant, c.Token, custos.ReasonDebugging, "INC-77: checking the reported bounce"); err != nil {
		t.Fatalf("reveal under break-glass: %v", err)
	}
	// The tenant may revoke it at once; and after an hour it is gone anyway.
	if g, err := f.vault.RevokeGrant(admin, tenant, g.ID); err != nil || g.Status != custos.GrantRevoked {
		t.Fatalf("tenant revoking the break-glass grant: %v", err)
	}
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 10); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("staff reading after the revoke: %v", err)
	}
}

func TestNotificationsInTheOutbox(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := &custos.AccessRequest{TenantID: tenant, Reason: "bounces", Ticket: "SUP-1", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	g, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.RevokeGrant(staff, tenant, g.ID); err != nil {
		t.Fatal(err)
	}
	want := "support.settings→tenant_admins+staff_security support.request→tenant_admins support.decision→principal:" + sp.ID + "+staff_security grant.ended→tenant_admins"
	if got := topics(outbox(t, f)); got != want {
		t.Fatalf("outbox: %s\nwant %s", got, want)
	}
	// A refused request announces nothing (its transaction rolled back).
	wantCode(t, "bad ticket", f.vault.RequestAccess(staff, &custos.AccessRequest{TenantID: tenant, Reason: "x", Ticket: "see jane@x.com please", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}), custos.EINVALID)
	if n := len(strings.Fields(topics(outbox(t, f)))); n != 4 {
		t.Fatalf("outbox holds %d support messages after a refusal, want 4", n)
	}
}

func TestTurningSupportOffEndsGrants(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, list, tokens, g := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 5)
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{MaxGrant: custos.Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 10); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("masked view after support access was turned off: %v", err)
	}
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDebugging, "x: checking the reported bounce"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("reveal after support access was turned off: %v", err)
	}
	gs, _ := f.vault.Grants(admin, tenant)
	if gs[0].ID != g.ID || gs[0].Status != custos.GrantRevoked {
		t.Fatalf("grant after turning support off: %+v", gs[0])
	}
}

func TestPagesPerHourCap(t *testing.T) {
	f := newFixture(t)
	_, staff, tenant, list, tokens, _ := grantedStaff(t, f, custos.ScopeViewMasked, 0)
	for i := range custos.SupportPagesPerHour {
		if _, err := f.vault.SupportContacts(staff, tenant, list, "", 1); err != nil {
			t.Fatalf("page %d: %v", i+1, err)
		}
		f.clock.Advance(time.Second)
	}
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 1); custos.ErrorCode(err) != custos.ETOOMANY {
		t.Fatalf("page beyond the hourly cap: %v", err)
	}
	if leaf := lastLeaf(t, f, custos.ActionSupportView); !strings.Contains(leaf, `"outcome":"denied"`) || strings.Contains(leaf, `"tokens"`) {
		t.Fatalf("the capped page's leaf: %s (want a denial naming no tokens)", leaf)
	}
	if _, err := f.vault.SupportContact(staff, tenant, tokens[0]); custos.ErrorCode(err) != custos.ETOOMANY {
		t.Fatalf("a single masked contact beyond the hourly cap: %v", err)
	}
	f.clock.Advance(time.Hour)
	c, err := f.vault.SupportContact(staff, tenant, tokens[0])
	if err != nil || c.Token != tokens[0] || !strings.Contains(c.Email, "***") {
		t.Fatalf("a masked contact by token in the next hour: %+v, %v", c, err)
	}
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 1); err != nil {
		t.Fatalf("page in the next hour: %v", err)
	}
}

func TestRevealRegister(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, _, tokens, g := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 5)
	const why = "customer Jane asked us to check her address"
	if _, err := f.vault.Reveal(staff, tenant, tokens[1], custos.ReasonCustomerRequest, why); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(storetest.Dump(t, f.db), "Jane asked") {
		t.Fatal("the reveal's free-text reason is stored in clear")
	}
	if strings.Contains(lastLeaf(t, f, custos.ActionSupportReveal), "Jane") {
		t.Fatal("the reveal's free-text reason is in a leaf")
	}
	if _, err := f.vault.Reveals(staff, tenant); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("staff reading the register: %v", err)
	}
	rs, err := f.vault.Reveals(admin, tenant)
	if err != nil || len(rs) != 1 {
		t.Fatalf("register: %+v, %v", rs, err)
	}
	if r := rs[0]; r.Reason != why || r.Token != tokens[1] || r.GrantID != g.ID || r.ReasonCode != custos.ReasonCustomerRequest || r.StaffID != g.StaffID {
		t.Fatalf("register entry %+v", r)
	}
}
