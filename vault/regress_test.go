package vault_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/postgres"
	"github.com/custos-dev/custos/vault"
)

// Regression tests for defects found in review.

// TestConcurrentDecisionsTwoNodes: an approval on one node and a denial on
// another, at once: exactly one commits (on PostgreSQL, where two nodes
// decide in two transactions).
func TestConcurrentDecisionsTwoNodes(t *testing.T) {
	if storetest.Engine() != storetest.Postgres {
		t.Skip("two nodes need PostgreSQL (set CUSTOS_TEST_POSTGRES)")
	}
	ctx := context.Background()
	st := vaulttest.Open(t, vault.Options{}) // node 1
	db, lg1, v1 := st.DB, st.Log, st.Vault
	db2, err := postgres.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	v2 := vault.New(db2.Read, db2.Write, st.OpenLog(t, db2.Read, db2.Write, true), keys.NewKeyring(st.KEK), vault.Options{Placeholders: db.Placeholders})
	f := &fixture{db: db, log: lg1, vault: v1, clock: &fakeClock{t: time.Now()}}
	f.bootstrap(t)
	admin, tenant, _ := f.admin(t)
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sam")
	if err := v1.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r := &custos.AccessRequest{TenantID: tenant, Reason: "bounce", Ticket: "SUP-1", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(time.Hour)}
		if err := v1.RequestAccess(staff, r); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var e1, e2 error
		wg.Add(2)
		go func() { defer wg.Done(); _, e1 = v1.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true}) }()
		go func() { defer wg.Done(); _, e2 = v2.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: false}) }()
		wg.Wait()
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("round %d: approve %v, deny %v: want exactly one to commit", i, e1, e2)
		}
		var grants int
		db.Read.QueryRow(`SELECT count(*) FROM grants WHERE request_id = $1`, r.ID).Scan(&grants)
		if want := map[bool]int{true: 1, false: 0}[e1 == nil]; grants != want {
			t.Fatalf("round %d: %d grants for the request, want %d", i, grants, want)
		}
	}
}

// TestExportCanariesDoNotCollide: exports of one list by many readers,
// each reader with watermark rows of its own, never reuse an address; a
// reader's repeated exports add none (they carry the reader's rows).
func TestExportCanariesDoNotCollide(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "jane.doe@gmail.com"}); err != nil {
		t.Fatal(err)
	}
	const readers = 40
	for i := range readers {
		ctx, _ := f.principal(t, custos.KindTenantAdmin, tenant, fmt.Sprintf("reader%d", i))
		for j := range 3 {
			if err := f.vault.Export(ctx, tenant, list, "csv", func(*custos.Contact) error { return nil }); err != nil {
				t.Fatalf("reader %d export %d: %v", i, j+1, err)
			}
		}
	}
	var n int
	f.db.Read.QueryRow(`SELECT count(*) FROM export_canaries`).Scan(&n)
	if n != readers*vault.DefaultCanaries {
		t.Fatalf("%d export canaries recorded, want %d distinct (%d per reader)", n, readers*vault.DefaultCanaries, vault.DefaultCanaries)
	}
}

// TestInvalidIDsStayOutOfLeaves: an id from the URL that is not an id —
// here an address — never reaches the immutable log.
func TestInvalidIDsStayOutOfLeaves(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	const email = "jane.doe@gmail.com"
	if _, err := f.vault.DecideRequest(admin, tenant, email, vault.Decision{Approve: true}); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("DecideRequest: %v", err)
	}
	if _, err := f.vault.RevokeGrant(admin, tenant, email); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("RevokeGrant: %v", err)
	}
	if _, _, err := f.vault.ApproveBreakGlass(sec, tenant, email); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("ApproveBreakGlass: %v", err)
	}
	if _, err := f.vault.UpdateAlert(sec, email, custos.AlertResolved, ""); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("UpdateAlert: %v", err)
	}
	if err := f.vault.SetSuspended(sec, email, true, "x"); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("SetSuspended: %v", err)
	}
	f.log.Sync(context.Background())
	if dump := storetest.Dump(t, f.db); strings.Contains(dump, email) {
		t.Fatal("an address given as an id is stored somewhere (the log?)")
	}
}

// TestBreakGlassNotificationNamesRequester: security staff are told who asks.
func TestBreakGlassNotificationNamesRequester(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, BreakGlass: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := &custos.AccessRequest{TenantID: tenant, Reason: "outage", Ticket: "INC-77", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestBreakGlass(staff, r); err != nil {
		t.Fatal(err)
	}
	for _, m := range outbox(t, f) {
		if m.Topic == "break_glass.request" && !strings.Contains(m.Text, sp.ID) {
			t.Fatalf("the notification %q does not name the requester %s", m.Text, sp.ID)
		}
	}
}

// TestDirectGrantNeedsSupportOn: a tenant admin cannot grant while the
// tenant's own setting says support access is off.
func TestDirectGrantNeedsSupportOn(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	_, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	g := &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMasked}
	if err := f.vault.CreateGrant(admin, g, time.Hour); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("grant while support access is off: %v", err)
	}
}
