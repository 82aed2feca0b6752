package vault_test

import (
	"context"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// principal creates a principal of kind with owner and returns a context
// authenticated as it.
func (f *fixture) principal(t *testing.T, kind custos.Kind, tenant, owner string) (context.Context, *custos.Principal) {
	t.Helper()
	p := &custos.Principal{Kind: kind, TenantID: tenant, Name: string(kind), Owner: owner}
	if err := f.vault.CreatePrincipal(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	secret, _, err := f.vault.CreateKey(f.ctx, p.ID, vault.KeyRequest{ExpiresIn: "never"})
	if err != nil {
		t.Fatal(err)
	}
	return f.as(t, secret), p
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if custos.ErrorCode(err) != code {
		t.Fatalf("%s: err = %v, want %s", what, err, code)
	}
}

func TestSupportAccessLifecycle(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	req := func() *custos.AccessRequest {
		return &custos.AccessRequest{TenantID: tenant, Reason: "bounces on list news", Ticket: "SUP-1", Scope: custos.ScopeViewMaskedReveal, Duration: 48 * time.Hour}
	}

	// Off by default: staff cannot even ask.
	wantCode(t, "request while support access is off", f.vault.RequestAccess(staff, req()), custos.EFORBIDDEN)
	wantCode(t, "staff turning support access on", f.vault.SetSupportSettings(staff, tenant, &vault.SupportSettings{SupportAccess: true, MaxGrant: time.Hour}), custos.EFORBIDDEN)
	if err := f.vault.SetSupportSettings(admin, tenant, &vault.SupportSettings{SupportAccess: true, MaxGrant: 36 * time.Hour}); err != nil {
		t.Fatal(err)
	}

	// A request; the admin sees it; a shortened approval; the grant is
	// capped by the tenant's maximum and ends by itself.
	r := req()
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	rs, err := f.vault.AccessRequests(admin, tenant)
	if err != nil || len(rs) != 1 || rs[0].Status != custos.RequestPending || rs[0].Reason != r.Reason {
		t.Fatalf("admin's view of requests: %+v, %v", rs, err)
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true, Duration: 72 * time.Hour}); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("approval lengthening the request: %v", err)
	}
	g, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true, RevealBudget: 5, Comment: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if g.StaffID != sp.ID || g.RevealBudget != 5 || g.ExpiresAt.Sub(g.StartsAt) != 36*time.Hour || g.Status != custos.GrantActive {
		t.Fatalf("grant %+v: want staff %s, budget 5, 36h (the tenant's maximum), active", g, sp.ID)
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true}); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Fatalf("deciding a decided request: %v", err)
	}
	f.clock.Advance(36 * time.Hour)
	gs, err := f.vault.Grants(admin, tenant)
	if err != nil || len(gs) != 1 || gs[0].Status != custos.GrantExpired {
		t.Fatalf("after 36h: %+v, %v; want the grant expired and still listed", gs, err)
	}

	// A pending request lapses after 12 hours.
	r2 := req()
	if err := f.vault.RequestAccess(staff, r2); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(custos.PendingRequestTTL)
	if _, err := f.vault.DecideRequest(admin, tenant, r2.ID, vault.Decision{Approve: true}); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Fatalf("approving an expired request: %v", err)
	}

	// Revoke by the tenant, end by the staff member; both only once.
	r3 := req()
	if err := f.vault.RequestAccess(staff, r3); err != nil {
		t.Fatal(err)
	}
	g3, err := f.vault.DecideRequest(admin, tenant, r3.ID, vault.Decision{Approve: true})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := f.vault.RevokeGrant(staff, tenant, g3.ID); err != nil || g.Status != custos.GrantEnded {
		t.Fatalf("staff ending their grant: %+v, %v", g, err)
	}
	if _, err := f.vault.RevokeGrant(admin, tenant, g3.ID); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Fatalf("revoking an ended grant: %v", err)
	}
	g4 := &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMasked}
	if err := f.vault.CreateGrant(admin, g4, time.Hour); err != nil {
		t.Fatal(err)
	}
	if g, err := f.vault.RevokeGrant(admin, tenant, g4.ID); err != nil || g.Status != custos.GrantRevoked {
		t.Fatalf("tenant revoking a direct grant: %+v, %v", g, err)
	}
	other, _ := f.principal(t, custos.KindStaffSupport, "", "olga")
	g5 := &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMasked}
	if err := f.vault.CreateGrant(admin, g5, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.RevokeGrant(other, tenant, g5.ID); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("staff ending someone else's grant: %v", err)
	}

	// Support access off again: requests are refused, and so are approvals.
	r6 := req()
	if err := f.vault.RequestAccess(staff, r6); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetSupportSettings(admin, tenant, &vault.SupportSettings{SupportAccess: false, MaxGrant: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r6.ID, vault.Decision{Approve: true}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("approval while support access is off: %v", err)
	}
	wantCode(t, "request after support access was turned off", f.vault.RequestAccess(staff, req()), custos.EFORBIDDEN)
}

// TestNobodyApprovesTheirOwnRequest: a person holding both a staff and a
// tenant admin principal (the same owner) cannot approve what they asked.
func TestNobodyApprovesTheirOwnRequest(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	if err := f.vault.SetSupportSettings(admin, tenant, &vault.SupportSettings{SupportAccess: true, MaxGrant: time.Hour}); err != nil {
		t.Fatal(err)
	}
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "dana")
	alsoAdmin, _ := f.principal(t, custos.KindTenantAdmin, tenant, "dana")
	r := &custos.AccessRequest{TenantID: tenant, Reason: "x", Ticket: "T-1", Scope: custos.ScopeViewMasked, Duration: time.Hour}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.DecideRequest(alsoAdmin, tenant, r.ID, vault.Decision{Approve: true}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("self-approval through a second principal: %v", err)
	}
	if err := f.vault.CreateGrant(alsoAdmin, &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMasked}, time.Hour); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("self-grant through a second principal: %v", err)
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: false, Comment: "no"}); err != nil {
		t.Fatalf("another admin denying: %v", err)
	}
}
