package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/receipt"
	"github.com/custos-dev/custos/vault"
)

// deletionFixture is newFixture keeping the log's verifier key.
func deletionFixture(t *testing.T) (*fixture, note.Verifier) {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	return f, st.Verifier
}

// TestTenantDeletion drives a tenant's deletion with the vault's clock:
// not before its grace period, then a receipt that verifies offline, 410
// for its data afterwards, and no address, attribute or blind index left
// anywhere in the database.
func TestTenantDeletion(t *testing.T) {
	f, verifier := deletionFixture(t)
	admin, tenant, list := f.admin(t)
	var tokens []string
	for i := range 3 {
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("doomed.person%d@shredded.test", i), Attributes: []byte(`{"first_name":"Quillon"}`)}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token)
	}
	blind := storetest.Column[[]byte](t, f.db.Read, `SELECT blind_index FROM contacts WHERE tenant_id = $1`, tenant)
	if len(blind) < 3 {
		t.Fatalf("%d blind indexes", len(blind))
	}
	_, otherTenant, otherList := f.admin(t)
	d, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != custos.DeletionScheduled || d.DueAt == nil || !d.DueAt.Equal(d.CreatedAt.Add(custos.DefaultDeletionGrace)) {
		t.Fatalf("deletion = %+v", d)
	}
	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Fatalf("second request: %v, want conflict", err)
	}
	wantOutbox(t, f, tenant, "deletion.scheduled")
	f.clock.Advance(custos.DefaultDeletionGrace - time.Minute)
	if n, err := f.vault.RunDueDeletions(context.Background(), f.clock.Now()); err != nil || n != 0 {
		t.Fatalf("before due: ran %d, %v", n, err)
	}
	if _, err := f.vault.Contact(admin, tenant, tokens[0]); err != nil {
		t.Fatalf("contact before the deletion is due: %v", err)
	}
	f.clock.Advance(2 * time.Minute)
	if n, err := f.vault.RunDueDeletions(context.Background(), f.clock.Now()); err != nil || n != 1 {
		t.Fatalf("when due: ran %d, %v", n, err)
	}
	wantOutbox(t, f, tenant, "tenant.deleted")

	rs, err := f.vault.Receipts(admin, tenant)
	if err != nil || len(rs) != 1 || rs[0].File == "" {
		t.Fatalf("receipts = %+v, %v", rs, err)
	}
	st, cp, err := receipt.Verify([]byte(rs[0].File), verifier)
	if err != nil {
		t.Fatalf("verify receipt: %v\n%s", err, rs[0].File)
	}
	if st.Scope != custos.DeletionScopeTenant || st.Tenant != tenant || st.Counts["contacts"] < 3 || st.Counts["lists"] != 1 || st.Counts["keysets"] != 1 || !strings.HasPrefix(st.Keyset, "sha256:") || cp.Size <= st.Entry {
		t.Fatalf("statement = %+v", st)
	}
	if got, err := f.vault.Receipt(admin, rs[0].ID); err != nil || got.File != rs[0].File {
		t.Fatalf("receipt by id: %v", err)
	}

	for what, err := range map[string]error{
		"contact": func() error { _, err := f.vault.Contact(admin, tenant, tokens[1]); return err }(),
		"list":    func() error { _, err := f.vault.List(admin, tenant, list); return err }(),
		"lists":   func() error { _, err := f.vault.Lists(admin, tenant); return err }(),
		"create": func() error {
			return f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "new@shredded.test"})
		}(),
	} {
		if custos.ErrorCode(err) != custos.EGONE || !strings.Contains(custos.ErrorMessage(err), rs[0].ID) {
			t.Errorf("%s after deletion: %v, want gone with receipt %s", what, err, rs[0].ID)
		}
	}
	if _, err := f.vault.AccessLog(admin, tenant, 0, 10); err != nil {
		t.Errorf("the deleted tenant's feed: %v", err)
	}
	// Other tenants are untouched.
	if _, err := f.vault.List(f.ctxFor(t, otherTenant), otherTenant, otherList); err != nil {
		t.Errorf("another tenant's list: %v", err)
	}

	f.log.Close()
	if f.db.Engine == storetest.SQLite {
		if _, err := f.db.Write.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
	}
	raw := storetest.Dump(t, f.db)
	for _, s := range []string{"doomed.person", "shredded.test", "Quillon"} {
		if strings.Contains(raw, s) {
			t.Errorf("database holds %q after the deletion", s)
		}
	}
	for _, b := range blind {
		if bytes.Contains([]byte(raw), b) {
			t.Errorf("database holds a blind index of the deleted tenant")
		}
	}
}

// ctxFor is a context of a second admin of tenant made by f.admin: the
// tests only need some principal of that tenant, so the operator's
// context would be refused; f.admin returned one already and we keep it.
func (f *fixture) ctxFor(t *testing.T, tenant string) context.Context {
	t.Helper()
	ctx, _ := f.principal(t, custos.KindTenantEditor, tenant, "ed")
	return ctx
}

func wantOutbox(t *testing.T, f *fixture, tenant, topic string) {
	t.Helper()
	n := storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM outbox WHERE tenant_id = $1 AND topic = $2 AND payload LIKE '%tenant_admins%'`, tenant, topic)
	if n[0] == 0 {
		t.Errorf("no %s notification to the tenant's admins", topic)
	}
}

// TestOperatorDeletion: an operator's request waits for a second,
// different operator; the same person (or one it created) cannot approve;
// a tenant admin can cancel it.
func TestOperatorDeletion(t *testing.T) {
	f, _ := deletionFixture(t)
	admin, tenant, _ := f.admin(t)
	d, err := f.vault.RequestTenantDeletion(f.ctx, tenant, &custos.DeletionRequest{GraceSeconds: int64(custos.MinDeletionGrace / time.Second)})
	if err != nil || d.Status != custos.DeletionAwaitingApproval || d.DueAt != nil {
		t.Fatalf("operator request: %+v, %v", d, err)
	}
	wantOutbox(t, f, tenant, "deletion.requested")
	wantCode(t, "self-approval", func() error { _, err := f.vault.ApproveTenantDeletion(f.ctx, tenant); return err }(), custos.EFORBIDDEN)
	f.clock.Advance(custos.MaxDeletionGrace)
	if n, _ := f.vault.RunDueDeletions(context.Background(), f.clock.Now()); n != 0 {
		t.Fatal("an unapproved operator deletion ran")
	}
	second, _ := f.principal(t, custos.KindOperator, "", "otto")
	d, err = f.vault.ApproveTenantDeletion(second, tenant)
	if err != nil || d.Status != custos.DeletionScheduled || d.DueAt == nil {
		t.Fatalf("second operator: %+v, %v", d, err)
	}
	if d, err = f.vault.CancelTenantDeletion(admin, tenant); err != nil || d.Status != custos.DeletionCancelled {
		t.Fatalf("tenant admin cancels: %+v, %v", d, err)
	}
	f.clock.Advance(custos.MaxDeletionGrace)
	if n, _ := f.vault.RunDueDeletions(context.Background(), f.clock.Now()); n != 0 {
		t.Fatal("a cancelled deletion ran")
	}
	// A tenant's own deletion is not an operator's to cancel.
	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "operator cancels a tenant's deletion", func() error { _, err := f.vault.CancelTenantDeletion(f.ctx, tenant); return err }(), custos.EFORBIDDEN)
	wantCode(t, "grace too short", func() error {
		_, err := f.vault.RequestTenantDeletion(f.ctx, tenant, &custos.DeletionRequest{GraceSeconds: 60})
		return err
	}(), custos.EINVALID)
}

// TestListAndContactReceipts: a list's and a contact's deletion return
// receipts that verify; the deleted ones answer 410 with them.
func TestListAndContactReceipts(t *testing.T) {
	f, verifier := deletionFixture(t)
	admin, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "erase.me@example.test"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	rc, err := f.vault.DeleteContact(admin, tenant, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := receipt.Verify([]byte(rc.File), verifier)
	if err != nil || st.Scope != custos.DeletionScopeContact || st.Contact != c.Token || st.List != list {
		t.Fatalf("contact receipt: %+v, %v", st, err)
	}
	_, err = f.vault.Contact(admin, tenant, c.Token)
	if custos.ErrorCode(err) != custos.EGONE || !strings.Contains(custos.ErrorMessage(err), rc.ID) {
		t.Fatalf("deleted contact: %v", err)
	}
	rl, err := f.vault.DeleteList(admin, tenant, list)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err = receipt.Verify([]byte(rl.File), verifier)
	if err != nil || st.Scope != custos.DeletionScopeList || st.List != list || st.Counts["lists"] != 1 {
		t.Fatalf("list receipt: %+v, %v", st, err)
	}
	if _, err := f.vault.List(admin, tenant, list); custos.ErrorCode(err) != custos.EGONE {
		t.Fatalf("deleted list: %v", err)
	}
}
