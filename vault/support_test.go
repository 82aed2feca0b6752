package vault_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// principal creates, as the operator, a principal of kind held by the
// person owner (owner@corp.test: one owner, one person), has its enrollment
// approved where it waits for a second party, enrolls it, and returns a
// context authenticated as it.
func (f *fixture) principal(t *testing.T, kind custos.Kind, tenant, owner string) (context.Context, *custos.Principal) {
	t.Helper()
	ctx, p, _ := f.principalSecret(t, kind, tenant, owner)
	return ctx, p
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
		return &custos.AccessRequest{TenantID: tenant, Reason: "bounces on list news", Ticket: "SUP-1", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(48 * time.Hour)}
	}

	// Off by default: staff cannot even ask.
	wantCode(t, "request while support access is off", f.vault.RequestAccess(staff, req()), custos.EFORBIDDEN)
	wantCode(t, "staff turning support access on", f.vault.SetSupportSettings(staff, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(time.Hour)}), custos.EFORBIDDEN)
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(36 * time.Hour)}); err != nil {
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
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: false, MaxGrant: custos.Duration(time.Hour)}); err != nil {
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
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "dana")
	alsoAdmin, _ := f.principal(t, custos.KindTenantAdmin, tenant, "dana")
	r := &custos.AccessRequest{TenantID: tenant, Reason: "x", Ticket: "T-1", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
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

// grantedStaff sets up a tenant with two contacts, support access on, and
// a staff member holding a grant of scope with the given reveal budget.
func grantedStaff(t *testing.T, f *fixture, scope custos.SupportScope, budget int) (admin, staff context.Context, tenant, list string, tokens []string, g *custos.Grant) {
	t.Helper()
	admin, tenant, list = f.admin(t)
	for _, e := range []string{"jane.doe@gmail.com", "bob@example.org"} {
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: e, Attributes: []byte(`{"first_name":"Jane"}`)}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token)
	}
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	g = &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: scope, RevealBudget: budget}
	if err := f.vault.CreateGrant(admin, g, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	return admin, staff, tenant, list, tokens, g
}

func TestStaffSeeMaskedAndRevealWithinBudget(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, list, tokens, g := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 2)

	p, err := f.vault.SupportContacts(staff, tenant, list, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Items {
		if strings.Contains(c.Email, "jane") || strings.Contains(c.Email, "bob") || c.Email == "" || !strings.Contains(c.Email, "***") {
			t.Errorf("staff see %q, want a masked address", c.Email)
		}
		if c.Attributes["first_name"] != "***" {
			t.Errorf("staff see attributes %v, want masked values", c.Attributes)
		}
	}
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 51); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("page of 51: %v", err)
	}
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], "BECAUSE", "x: checking the reported bounce"); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("reveal with an unknown reason code: %v", err)
	}
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDebugging, ""); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("reveal without a reason: %v", err)
	}
	for i := range 2 {
		c, err := f.vault.Reveal(staff, tenant, tokens[i], custos.ReasonCustomerRequest, "ticket SUP-1: checking the reported bounce")
		if err != nil || !strings.Contains(c.Email, "@") || strings.Contains(c.Email, "***") {
			t.Fatalf("reveal %d: %+v, %v", i, c, err)
		}
	}
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonCustomerRequest, "again: checking the reported bounce"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("reveal beyond the budget: %v", err)
	}
	gs, _ := f.vault.Grants(admin, tenant)
	if gs[0].ID != g.ID || gs[0].RevealsUsed != 2 {
		t.Fatalf("grant after reveals: %+v", gs[0])
	}
	// No export for staff, grant or not; no ordinary listing either.
	if err := f.vault.Export(staff, tenant, list, "csv", func(*custos.Contact) error { return nil }); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("staff export: %v", err)
	}
	if _, err := f.vault.Contacts(staff, tenant, list, "", 10); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("staff unmasked listing: %v", err)
	}
	// The grant expires by itself: nothing more to see.
	f.clock.Advance(2 * time.Hour)
	if _, err := f.vault.SupportContacts(staff, tenant, list, "", 10); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("masked view after expiry: %v", err)
	}
}

func TestMaskedGrantCannotReveal(t *testing.T) {
	f := newFixture(t)
	_, staff, tenant, _, tokens, _ := grantedStaff(t, f, custos.ScopeViewMasked, 0)
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDebugging, "x: checking the reported bounce"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("reveal under a view_masked grant: %v", err)
	}
}

// TestRevokeRacesReveals: reveals in flight while the tenant revokes.
// No reveal that started after the revoke returned succeeds, the budget
// counts exactly the reveals that succeeded, and (with one sequencer) no
// successful reveal's leaf comes after the revoke's.
func TestRevokeRacesReveals(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, _, tokens, g := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 1000)
	var (
		mu        sync.Mutex
		ok        int
		lateOK    int
		revokedAt time.Time
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, err := f.vault.Reveal(staff, tenant, tokens[w%2], custos.ReasonDebugging, "race: checking the reported bounce")
				mu.Lock()
				if err == nil {
					ok++
					if !revokedAt.IsZero() && start.After(revokedAt) {
						lateOK++
					}
				}
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := ok
		mu.Unlock()
		if n >= 20 {
			break
		}
		runtime.Gosched()
	}
	if _, err := f.vault.RevokeGrant(admin, tenant, g.ID); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	revokedAt = time.Now()
	mu.Unlock()
	// Let the workers try again after the revoke, then stop them.
	for range 50 {
		if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDebugging, "after: checking the reported bounce"); err == nil {
			t.Fatal("a reveal succeeded after the revoke returned")
		}
	}
	close(stop)
	wg.Wait()
	if lateOK != 0 {
		t.Fatalf("%d reveals that started after the revoke succeeded", lateOK)
	}
	gs, _ := f.vault.Grants(admin, tenant)
	if gs[0].RevealsUsed != ok {
		t.Fatalf("budget spent %d, successful reveals %d", gs[0].RevealsUsed, ok)
	}
	if !f.db.Queued {
		var revokeIdx int64
		if err := f.db.Read.QueryRow(`SELECT MAX(idx) FROM audit_leaves WHERE action = 'grant.revoke'`).Scan(&revokeIdx); err != nil {
			t.Fatal(err)
		}
		var after int
		f.db.Read.QueryRow(`SELECT count(*) FROM audit_leaves WHERE action = 'support.reveal' AND idx > $1 AND data LIKE '%"outcome":"ok"%'`, revokeIdx).Scan(&after)
		if after != 0 {
			t.Fatalf("%d successful reveals logged after the revoke", after)
		}
	}
}

// TestReasonGatedReveals: a tenant that accepts only some reason codes
// refuses — and logs — reveals for any other.
func TestReasonGatedReveals(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, _, tokens, _ := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 5)
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(time.Hour), ReasonCodes: []string{"WHATEVER"}}); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("unknown reason code in settings: %v", err)
	}
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(time.Hour), ReasonCodes: []string{custos.ReasonDataSubjectRequest}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDebugging, "x: checking the reported bounce"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("reveal for a reason the tenant does not accept: %v", err)
	}
	var data []byte
	f.log.Sync(context.Background())
	if err := f.db.Read.QueryRow(`SELECT data FROM audit_leaves WHERE action = 'support.reveal' ORDER BY idx DESC LIMIT 1`).Scan(&data); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"outcome":"denied"`) || !strings.Contains(string(data), "does not accept reason code DEBUGGING") {
		t.Fatalf("the refusal's leaf: %s", data)
	}
	if _, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDataSubjectRequest, "DSR-7: checking the reported bounce"); err != nil {
		t.Fatalf("reveal for an accepted reason: %v", err)
	}
}
