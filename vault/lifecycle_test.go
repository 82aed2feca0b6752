package vault_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/vault"
)

// principalBy is f.principal with creator creating it for identity.
func principalBy(t *testing.T, f *fixture, creator context.Context, kind custos.Kind, tenant, identity string) (context.Context, *custos.Principal) {
	t.Helper()
	p := &custos.Principal{Kind: kind, TenantID: tenant, Name: string(kind), Owner: "team", Identity: identity}
	e, err := f.vault.CreatePrincipal(creator, p)
	if err != nil {
		t.Fatal(err)
	}
	f.approvers.Settle(t, e)
	ctx := f.as(t, enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{ExpiresIn: "never"}))
	return ctx, custos.PrincipalFromContext(ctx)
}

// TestContainLsListsActiveContainments (issue 13, finding 6): security
// staff list every containment in force — suspended principals and frozen
// tenants, by an alert or by hand — with what applied it, the reason given
// by hand, and who may lift it: the rule, and the security principals it
// refuses here (those of the person contained, those of the person who
// created the contained principal). Ended grants and lifted containments
// are not listed; nobody but security staff may list.
func TestContainLsListsActiveContainments(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	_, tenant2, _ := f.admin(t)
	sec, secP := f.principal(t, custos.KindStaffSecurity, "", "sec")
	// An operator who goes rogue, with a security principal of their own;
	// a service key the tenant's admin created, whose holder also has a
	// security principal.
	_, malP := f.principal(t, custos.KindOperator, "", "mallory")
	malSecCtx, malSec := f.principal(t, custos.KindStaffSecurity, "", "mallory")
	adminP := custos.PrincipalFromContext(admin)
	_, svc := principalBy(t, f, admin, custos.KindService, tenant, "crm-team@acme.test")
	adminSecCtx, adminSec := principalBy(t, f, f.ctx, custos.KindStaffSecurity, "", addressOf(t, f, adminP))
	_, sam := f.principal(t, custos.KindStaffSupport, "", "sam")
	// A grant that ends: not a containment in force.
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	g := &custos.Grant{TenantID: tenant, StaffID: sam.ID, Scope: custos.ScopeViewMasked}
	if err := f.vault.CreateGrant(admin, g, time.Hour); err != nil {
		t.Fatal(err)
	}

	alert := f.contain(t, []string{malP.ID, svc.ID}, []string{tenant})
	const why = "ticket SEC-7: jo.witness@example.test reported the leak"
	if err := f.vault.SetFrozen(sec, tenant2, true, why); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetSuspended(sec, sam.ID, true, "SEC-8"); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetSuspended(sec, sam.ID, false, "SEC-8 cleared"); err != nil {
		t.Fatal(err)
	}

	cs, err := f.vault.Containments(sec)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*custos.Containment{}
	for _, c := range cs {
		got[c.Kind+" "+c.Target] = c
	}
	if len(cs) != 4 {
		t.Fatalf("%d containments, want 4 (mallory and the service key suspended, two tenants frozen): %+v", len(cs), cs)
	}
	susp, svcSusp, frz, hand := got["suspension "+malP.ID], got["suspension "+svc.ID], got["freeze "+tenant], got["freeze "+tenant2]
	if susp == nil || svcSusp == nil || frz == nil || hand == nil {
		t.Fatalf("containments %v", got)
	}
	for _, c := range []struct {
		c         *custos.Containment
		contained []string
		excluded  []string
	}{
		{susp, []string{malP.ID}, []string{malSec.ID}},     // the same person
		{svcSusp, []string{svc.ID}, []string{adminSec.ID}}, // its creator
		{frz, []string{malP.ID, svc.ID}, []string{malSec.ID, adminSec.ID}},
	} {
		slices.Sort(c.contained)
		slices.Sort(c.excluded)
		if c.c.AlertID != alert || !slices.Equal(c.c.Contained, c.contained) || !slices.Equal(c.c.Excluded, c.excluded) {
			t.Errorf("%s %s: alert %q contained %v excluded %v; want alert %s, contained %v, excluded %v (never %s)",
				c.c.Kind, c.c.Target, c.c.AlertID, c.c.Contained, c.c.Excluded, alert, c.contained, c.excluded, secP.ID)
		}
	}
	if hand.AlertID != "" || hand.By != secP.ID || hand.Reason != why || hand.ActionID == "" || len(hand.Excluded) != 0 {
		t.Errorf("freeze by hand: %+v", hand)
	}
	// The list says what mayLift does.
	if err := f.vault.SetSuspended(malSecCtx, malP.ID, false, "me"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("the contained person lifted their own suspension: %v", err)
	}
	if err := f.vault.SetSuspended(sec, malP.ID, false, "SEC-7 closed"); err != nil {
		t.Errorf("security staff the list allows could not lift: %v", err)
	}
	if err := f.vault.SetSuspended(adminSecCtx, svc.ID, false, "mine"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("the creator of the contained key lifted its suspension: %v", err)
	}
	if cs, _ := f.vault.Containments(sec); len(cs) != 3 {
		t.Errorf("after the lift, %d containments, want 3", len(cs))
	}
	if _, err := f.vault.Containments(admin); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("a tenant admin listed containments: %v", err)
	}
	if _, err := f.vault.Containments(f.ctx); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("an operator listed containments: %v", err)
	}
}

// TestFreeTextSealedAtRest (issue 13, finding 8): every free-text field
// that can hold an address — access-request and break-glass reasons,
// decision comments, alert notes, containment reasons — is stored sealed
// (a dump of the database holds none of it) and opened for the readers
// entitled to it.
func TestFreeTextSealedAtRest(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	sec2, _ := f.principal(t, custos.KindStaffSecurity, "", "sec2")
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, BreakGlass: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"request reason":     "customer anna.reason@example.test cannot log in",
		"decision comment":   "ok, but only anna.comment@example.test",
		"break-glass reason": "outage for bert.glass@example.test",
		"alert note":         "false positive: carl.note@example.test is our tester",
		"suspension reason":  "dora.suspend@example.test complained",
		"freeze reason":      "eve.freeze@example.test found the list online",
	}
	r := &custos.AccessRequest{TenantID: tenant, Reason: secrets["request reason"], Ticket: "T-1", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true, Comment: secrets["decision comment"]}); err != nil {
		t.Fatal(err)
	}
	bg := &custos.AccessRequest{TenantID: tenant, Reason: secrets["break-glass reason"], Ticket: "INC-2", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestBreakGlass(staff, bg); err != nil {
		t.Fatal(err)
	}
	approved, _, err := f.vault.ApproveBreakGlass(sec, tenant, bg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if approved.Reason != secrets["break-glass reason"] {
		t.Errorf("the security approver sees reason %q", approved.Reason)
	}
	alert := f.contain(t, []string{sp.ID}, nil)
	if _, err := f.vault.UpdateAlert(sec, alert, custos.AlertResolved, secrets["alert note"]); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetSuspended(sec2, sp.ID, false, "cleared"); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetSuspended(sec, sp.ID, true, secrets["suspension reason"]); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetFrozen(sec, tenant, true, secrets["freeze reason"]); err != nil {
		t.Fatal(err)
	}

	// Opened for those entitled to them.
	reqs, err := f.vault.AccessRequests(admin, tenant)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, x := range reqs {
		if x.ID == r.ID {
			seen["request reason"], seen["decision comment"] = x.Reason, x.Comment
		}
		if x.ID == bg.ID {
			seen["break-glass reason"] = x.Reason
		}
	}
	as, err := f.vault.Alerts(sec, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.ID == alert {
			seen["alert note"] = a.Note
		}
	}
	cs, err := f.vault.Containments(sec2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		seen[c.Kind+" reason"] = c.Reason
	}
	for what, want := range secrets {
		if seen[what] != want {
			t.Errorf("%s read back as %q, want %q", what, seen[what], want)
		}
	}

	// Stored sealed: a dump of the database holds none of it.
	f.log.Close()
	raw := storetest.Dump(t, f.db)
	for what, s := range secrets {
		addr := strings.Fields(s)[slices.IndexFunc(strings.Fields(s), func(w string) bool { return strings.Contains(w, "@") })]
		if strings.Contains(raw, addr) {
			t.Errorf("the database holds the %s's address %s in clear", what, addr)
		}
	}
}

// TestFreeTextSealedAtRestOldRows: rows written in clear before sealing
// stay readable, and SealFreeText seals them, recorded in one system
// entry.
func TestFreeTextSealedAtRestOldRows(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sam")
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := &custos.AccessRequest{TenantID: tenant, Reason: "placeholder", Ticket: "T-1", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetFrozen(sec, tenant, true, "placeholder"); err != nil {
		t.Fatal(err)
	}
	// As an older custos wrote them: in clear.
	const oldReason, oldFreeze = "old.reason@example.test asked", "old.freeze@example.test"
	if _, err := f.db.Write.Exec(`UPDATE access_requests SET reason = $1 WHERE id = $2`, oldReason, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Write.Exec(`UPDATE containment_actions SET reason = $1 WHERE target = $2`, oldFreeze, tenant); err != nil {
		t.Fatal(err)
	}
	readBack := func() (string, string) {
		t.Helper()
		reqs, err := f.vault.AccessRequests(admin, tenant)
		if err != nil || len(reqs) != 1 {
			t.Fatalf("requests %v %v", reqs, err)
		}
		cs, err := f.vault.Containments(sec)
		if err != nil || len(cs) != 1 {
			t.Fatalf("containments %v %v", cs, err)
		}
		return reqs[0].Reason, cs[0].Reason
	}
	if a, b := readBack(); a != oldReason || b != oldFreeze {
		t.Fatalf("old rows read back as %q, %q", a, b)
	}
	n, err := f.vault.SealFreeText(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("SealFreeText sealed %d rows (%v), want 2", n, err)
	}
	if n, err := f.vault.SealFreeText(context.Background()); err != nil || n != 0 {
		t.Fatalf("a second SealFreeText sealed %d rows (%v), want 0", n, err)
	}
	var reason, freeze string
	f.db.Read.QueryRow(`SELECT reason FROM access_requests WHERE id = $1`, r.ID).Scan(&reason)
	f.db.Read.QueryRow(`SELECT reason FROM containment_actions WHERE target = $1`, tenant).Scan(&freeze)
	if strings.Contains(reason, "example.test") || strings.Contains(freeze, "example.test") {
		t.Fatalf("still in clear after SealFreeText: %q, %q", reason, freeze)
	}
	if a, b := readBack(); a != oldReason || b != oldFreeze {
		t.Fatalf("sealed old rows read back as %q, %q", a, b)
	}
	if leaf := lastLeaf(t, f, "storage.seal"); !strings.Contains(leaf, `"count":2`) || strings.Contains(leaf, "example.test") {
		t.Errorf("the sealing's leaf: %s", leaf)
	}
}
