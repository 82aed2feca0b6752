package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
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

// deleteTenantNow has admin delete tenant, moves the clock past the grace
// period, runs the due deletion and returns the tenant's receipt.
func (f *fixture) deleteTenantNow(t *testing.T, admin context.Context, tenant string) *custos.Receipt {
	t.Helper()
	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(custos.DefaultDeletionGrace + time.Minute)
	if n, err := f.vault.RunDueDeletions(context.Background(), f.clock.Now()); err != nil || n != 1 {
		t.Fatalf("deletion ran %d, %v", n, err)
	}
	rs, err := f.vault.Receipts(admin, tenant)
	if err != nil || len(rs) != 1 || rs[0].File == "" {
		t.Fatalf("receipts %+v, %v", rs, err)
	}
	return rs[0]
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
	if st.Scope != custos.DeletionScopeTenant || st.Tenant != tenant || st.Counts["contacts"] < 3 || st.Counts["lists"] != 1 || !strings.HasPrefix(st.Keyset, "sha256:") || cp.Size <= st.Entry {
		t.Fatalf("statement = %+v", st)
	}
	// The tenant's keyset and its list's, wrapped under it, both gone; the
	// KEK that wrapped them is the vendor's key file.
	if st.Counts["keysets"] != 2 || st.KEK != keys.KEKVendorLocal {
		t.Fatalf("statement = %+v", st)
	}
	if got, err := f.vault.Receipt(admin, rs[0].ID); err != nil || got.File != rs[0].File {
		t.Fatalf("receipt by id: %v", err)
	}
	// The same call purged the rows and recorded it.
	if p := lastLeaf(t, f, custos.ActionTenantPurge); !strings.Contains(p, "purged receipt "+rs[0].ID) || !strings.Contains(p, fmt.Sprintf("contacts=%d", st.Counts["contacts"])) {
		t.Errorf("tenant.purge entry = %s; want the receipt and %d contacts", p, st.Counts["contacts"])
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

// TestTenantPurgeResumes: a tenant's rows are purged after its keys are
// shredded, in batches. Between the two the tenant answers 410 to every
// request and its keys are gone; a purge cut short (one batch, then the
// node "crashes") is finished by a new vault on the same database, once,
// and the receipt still verifies. Both ways of running the batches: in
// the log's commits (SQLite's default) and in transactions of their own
// (PostgreSQL's).
func TestTenantPurgeResumes(t *testing.T) {
	for name, mode := range map[string]vault.PurgeMode{"commits": vault.PurgeInCommits, "batches": vault.PurgeInBatches} {
		t.Run(name, func(t *testing.T) { testTenantPurgeResumes(t, mode) })
	}
}

func testTenantPurgeResumes(t *testing.T, mode vault.PurgeMode) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now, PurgeBatch: 2, PurgeBatches: 1, Purge: mode})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	admin, tenant, list := f.admin(t)
	otherAdmin, other, otherList := f.admin(t)
	var tokens []string
	for i := range 7 {
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("purged.person%d@batches.test", i), Attributes: []byte(`{"first_name":"Ermentrude"}`)}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token)
	}
	keep := &custos.Contact{TenantID: other, ListID: otherList, Email: "stays@example.test"}
	if err := f.vault.CreateContact(otherAdmin, keep); err != nil {
		t.Fatal(err)
	}
	blind := storetest.Column[[]byte](t, f.db.Read, `SELECT blind_index FROM contacts WHERE tenant_id = $1`, tenant)
	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(custos.DefaultDeletionGrace + time.Minute)
	if n, err := f.vault.RunDueDeletions(ctx, clock.Now()); err != nil || n != 1 {
		t.Fatalf("ran %d, %v", n, err)
	}
	rows := func(query string) int {
		t.Helper()
		return storetest.Column[int](t, f.db.Read, query, tenant)[0]
	}
	purges := func() int {
		t.Helper()
		f.log.Sync(ctx)
		return storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM audit_leaves WHERE action = $1 AND tenant_id = $2`, string(custos.ActionTenantPurge), tenant)[0]
	}

	// Shredded, not purged: rows remain, the keys do not.
	left := rows(`SELECT count(*) FROM contacts WHERE tenant_id = $1`)
	if left == 0 || left >= len(blind) {
		t.Fatalf("%d of %d contact rows left after one batch; want some, not all", left, len(blind))
	}
	if n := rows(`SELECT count(*) FROM tenant_keys WHERE tenant_id = $1`) + rows(`SELECT count(*) FROM list_keys WHERE tenant_id = $1`); n != 0 {
		t.Fatalf("%d keyset rows after the shredding", n)
	}
	if n := purges(); n != 0 {
		t.Fatalf("%d tenant.purge entries before the purge is done", n)
	}
	rs, err := f.vault.Receipts(admin, tenant)
	if err != nil || len(rs) != 1 || rs[0].File == "" {
		t.Fatalf("receipts = %+v, %v", rs, err)
	}
	stmt, _, err := receipt.Verify([]byte(rs[0].File), st.Verifier)
	if err != nil || stmt.Counts["contacts"] != len(blind) || stmt.Counts["lists"] != 1 || stmt.Counts["keysets"] != 2 {
		t.Fatalf("statement %+v, %v; want %d contacts, 1 list, 2 keysets (the tenant's and its list's)", stmt, err, len(blind))
	}
	gone := map[string]error{
		"contact": func() error { _, err := f.vault.Contact(admin, tenant, tokens[6]); return err }(),
		"contacts": func() error {
			_, err := f.vault.Contacts(admin, tenant, list, "", 10)
			return err
		}(),
		"tokens": func() error {
			_, err := f.vault.Tokens(admin, tenant, list, "", 10)
			return err
		}(),
		"lookup": func() error {
			_, err := f.vault.Lookup(admin, tenant, list, "purged.person6@batches.test")
			return err
		}(),
		"export": f.vault.Export(admin, tenant, list, "csv", func(*custos.Contact) error { return nil }),
		"update": func() error {
			email := "changed@batches.test"
			_, err := f.vault.UpdateContact(admin, tenant, tokens[6], custos.ContactUpdate{Email: &email})
			return err
		}(),
		"list":           func() error { _, err := f.vault.List(admin, tenant, list); return err }(),
		"lists":          func() error { _, err := f.vault.Lists(admin, tenant); return err }(),
		"delete contact": func() error { _, err := f.vault.DeleteContact(admin, tenant, tokens[6]); return err }(),
		"delete list":    func() error { _, err := f.vault.DeleteList(admin, tenant, list); return err }(),
		"create":         f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "new@batches.test"}),
	}
	for what, err := range gone {
		if custos.ErrorCode(err) != custos.EGONE || !strings.Contains(custos.ErrorMessage(err), rs[0].ID) {
			t.Errorf("%s between shredding and purge: %v, want gone with receipt %s", what, err, rs[0].ID)
		}
	}
	// A vault that never cached the tenant's keys has nothing to open
	// the rows with either.
	fresh := vault.New(f.db.Read, f.db.Write, f.log, keys.NewKeyring(st.KEK), vault.Options{Placeholders: f.db.Placeholders, Now: clock.Now})
	if _, err := fresh.Contact(admin, tenant, tokens[6]); custos.ErrorCode(err) != custos.EGONE {
		t.Errorf("contact from a fresh vault: %v, want gone", err)
	}

	// The node "crashes"; a new one on the same database finishes the purge.
	f.log.Close()
	f.log = st.OpenLog(t, f.db.Read, f.db.Write, f.db.Queued)
	for deadline := time.Now().Add(30 * time.Second); !f.log.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // queued mode: only the leader purges
			t.Fatal("the new log did not become the leader")
		}
	}
	f.vault = vault.New(f.db.Read, f.db.Write, f.log, keys.NewKeyring(st.KEK),
		vault.Options{Placeholders: f.db.Placeholders, Now: clock.Now, LogSigner: st.Signer, LogVerifier: st.Verifier, Purge: mode})
	for range 2 { // the second run finds nothing to do: one tenant.purge entry
		if n, err := f.vault.RunDueDeletions(ctx, clock.Now()); err != nil || n != 0 {
			t.Fatalf("resumed: ran %d, %v", n, err)
		}
	}
	for _, q := range []string{
		`SELECT count(*) FROM contacts WHERE tenant_id = $1`,
		`SELECT count(*) FROM lists WHERE tenant_id = $1`,
		`SELECT count(*) FROM suppressions WHERE tenant_id = $1`,
		`SELECT count(*) FROM reveals WHERE tenant_id = $1`,
	} {
		if n := rows(q); n != 0 {
			t.Errorf("%s = %d after the purge", q, n)
		}
	}
	if n := purges(); n != 1 {
		t.Fatalf("%d tenant.purge entries, want 1", n)
	}
	// The resumed call's counts: the rows it removed, each once.
	if p := lastLeaf(t, f, custos.ActionTenantPurge); !strings.Contains(p, "purged receipt "+rs[0].ID) || !strings.Contains(p, "lists=1") ||
		!strings.Contains(p, fmt.Sprintf(" contacts=%d ", left)) {
		t.Errorf("tenant.purge entry = %s", p)
	}
	if _, _, err := receipt.Verify([]byte(rs[0].File), st.Verifier); err != nil {
		t.Fatalf("receipt after the purge: %v", err)
	}
	if _, err := f.vault.Contact(otherAdmin, other, keep.Token); err != nil {
		t.Errorf("another tenant's contact: %v", err)
	}
	f.log.Close()
	if f.db.Engine == storetest.SQLite {
		if _, err := f.db.Write.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
	}
	raw := storetest.Dump(t, f.db)
	for _, s := range []string{"purged.person", "batches.test", "Ermentrude"} {
		if strings.Contains(raw, s) {
			t.Errorf("database holds %q after the purge", s)
		}
	}
	for _, b := range blind {
		if bytes.Contains([]byte(raw), b) {
			t.Errorf("database holds a blind index of the purged tenant")
		}
	}
}

// TestVerifyDataAfterTenantDeletion: the data check replays a tenant's
// deletion: its contacts are gone by the log's own account, not "deleted
// outside custos"; a row removed behind custos's back in a live tenant is
// still found.
func TestVerifyDataAfterTenantDeletion(t *testing.T) {
	f, _ := deletionFixture(t)
	admin, tenant, list := f.admin(t)
	other, otherTenant, otherList := f.admin(t)
	var doomed []string
	for i := range 2 {
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("leaving%d@example.test", i)}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		doomed = append(doomed, c.Token)
	}
	kept := &custos.Contact{TenantID: otherTenant, ListID: otherList, Email: "staying@example.test"}
	if err := f.vault.CreateContact(other, kept); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(custos.DefaultDeletionGrace + time.Minute)
	if n, err := f.vault.RunDueDeletions(context.Background(), f.clock.Now()); err != nil || n != 1 {
		t.Fatalf("deletion: ran %d, %v", n, err)
	}
	f.exec(t, `DELETE FROM contacts WHERE token = $1`, kept.Token)
	fs := f.verifyData(t)
	for _, fd := range fs {
		if slices.Contains(doomed, fd.Row) {
			t.Errorf("a contact of the deleted tenant is reported: %+v", fd)
		}
	}
	wantFinding(t, fs, vault.FindingDeleted, "contacts", kept.Token)
}
