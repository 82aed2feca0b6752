package vault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
)

// TestIdentitiesSealedAtRest: the addresses of principals (operator,
// tenant admin, staff) appear nowhere in the database, yet enrollment
// mails still reach them and one person is still one person.
func TestIdentitiesSealedAtRest(t *testing.T) {
	f := newFixture(t) // op@vendor.test
	admin, tenant, _ := f.admin(t)
	_, sp := f.principal(t, custos.KindStaffSupport, "", "sam.secret")
	e := f.mustMint(t, admin, custos.KindTenantEditor, tenant, "Ed.Itor+x@Acme.test", custos.EnrollIssued)
	if got := addressOf(t, f, sp); got != "sam.secret@corp.test" {
		t.Fatalf("sam's address opens as %q", got)
	}
	wantMailTo(t, f, e.ID, "ed.itor@acme.test")
	// The same person under another spelling is the same person.
	e2 := f.mustMint(t, admin, custos.KindTenantEditor, tenant, "ED.ITOR@acme.test", custos.EnrollIssued)
	p1, _ := f.vault.Principal(f.ctx, e.PrincipalID)
	p2, _ := f.vault.Principal(f.ctx, e2.PrincipalID)
	if p1 == nil || p2 == nil || !p1.SamePerson(p2) || !strings.HasPrefix(p1.Identity, "pe_") {
		t.Fatalf("two spellings of one address: %+v, %+v", p1, p2)
	}
	f.log.Close()
	raw := strings.ToLower(storetest.Dump(t, f.db))
	for _, s := range []string{"op@vendor.test", "admin1@acme.test", "sam.secret@corp.test", "ed.itor"} {
		if strings.Contains(raw, s) {
			t.Errorf("the database holds %q in clear", s)
		}
	}
}

// TestSealIdentitiesConvertsOldRows: a principal stored with its address
// in clear (as before sealing) is converted at start: same person
// pseudonym as before, its address sealed, its mail still delivered.
func TestSealIdentitiesConvertsOldRows(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, sp := f.principal(t, custos.KindStaffSupport, "", "old.timer")
	f.exec(t, `UPDATE principals SET identity = $1, identity_sealed = NULL WHERE id = $2`, "old.timer@corp.test", sp.ID)
	f.exec(t, `UPDATE enrollments SET requester_identity = $1 WHERE principal_id = $2`, "old.timer@corp.test", sp.ID)
	if err := f.vault.Reseal(ctx, "principals", sp.ID); err != nil {
		t.Fatal(err)
	}
	var en string
	if err := f.db.Read.QueryRow(`SELECT id FROM enrollments WHERE principal_id = $1`, sp.ID).Scan(&en); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.Reseal(ctx, "enrollments", en); err != nil {
		t.Fatal(err)
	}
	n, err := f.vault.SealIdentities(ctx)
	if err != nil || n != 1 {
		t.Fatalf("SealIdentities: %d, %v; want 1", n, err)
	}
	p, err := f.vault.Principal(f.ctx, sp.ID)
	if err != nil || p.Identity != sp.Identity {
		t.Fatalf("after conversion: %+v, %v; want identity %s (the pseudonym it had)", p, err, sp.Identity)
	}
	if got := addressOf(t, f, p); got != "old.timer@corp.test" {
		t.Fatalf("converted address opens as %q", got)
	}
	if n, err := f.vault.SealIdentities(ctx); err != nil || n != 0 {
		t.Fatalf("second run: %d, %v; want nothing left", n, err)
	}
	f.log.Close()
	if f.db.Engine == storetest.SQLite { // the WAL keeps the old frames until a checkpoint, as after any write
		if _, err := f.db.Write.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
	}
	if raw := storetest.Dump(t, f.db); strings.Contains(raw, "old.timer@corp.test") {
		t.Error("the converted address is still in the database")
	}
}

// TestSwappedSealedAddressMailsNobody: an insider with database access
// copies their own sealed address onto an admin's row to receive its
// mails; the address no longer opens for that row, and nothing is sent.
func TestSwappedSealedAddressMailsNobody(t *testing.T) {
	f := newFixture(t)
	admin, _, _ := f.admin(t)
	ap := custos.PrincipalFromContext(admin)
	_, mal := f.principal(t, custos.KindOperator, "", "mallory")
	f.exec(t, `UPDATE principals SET identity_sealed = (SELECT identity_sealed FROM principals WHERE id = $1) WHERE id = $2`, mal.ID, ap.ID)
	if a, err := f.vault.AddressOf(context.Background(), ap); err == nil {
		t.Fatalf("a sealed address copied from another row opened as %q", a)
	}
	box := newMailbox(t, f)
	box.take()
	if _, err := f.vault.RequestTenantDeletion(admin, ap.TenantID, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	for to := range box.take() {
		if strings.Contains(to, "mallory") {
			t.Errorf("the admin's notice went to %s", to)
		}
	}
}
