package vault_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
)

type fixture struct {
	db    *store.DB
	log   *audit.Log
	vault *vault.Vault
	ctx   context.Context // operator
	clock *fakeClock      // the vault's clock: tests move it instead of sleeping
	// approvers decide the enrollments that wait for a second party.
	approvers enrolltest.Approvers
	tenants   int
	seconds   int // second tenant admins made by approveKeyChange
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	return f
}

// as returns a context authenticated with secret.
func (f *fixture) as(t testing.TB, secret string) context.Context {
	t.Helper()
	return enrolltest.As(t, f.vault, secret, "")
}

// bootstrap creates the first operator (f.ctx).
func (f *fixture) bootstrap(t testing.TB) {
	t.Helper()
	_, secret, err := f.vault.Bootstrap(context.Background(), "op", "op@vendor.test")
	if err != nil {
		t.Fatal(err)
	}
	f.ctx = f.as(t, secret)
	f.approvers = enrolltest.Approvers{V: f.vault}
	f.approvers.Add(f.ctx)
}

// admin creates a tenant whose first admin enrolls from its mail, and a
// list; it returns the admin's context.
func (f *fixture) admin(t testing.TB) (ctx context.Context, tenant, list string) {
	t.Helper()
	tn := &custos.Tenant{Name: "Acme"}
	f.tenants++
	e, err := f.vault.CreateTenant(f.ctx, tn, fmt.Sprintf("admin%d@acme.test", f.tenants))
	if err != nil {
		t.Fatal(err)
	}
	ctx = f.as(t, enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{}))
	f.approvers.Add(ctx)
	l := &custos.List{TenantID: tn.ID, Name: "news"}
	if err := f.vault.CreateList(ctx, l); err != nil {
		t.Fatal(err)
	}
	return ctx, tn.ID, l.ID
}

// TestEncryptedAtRest reads the database as an engineer with database
// access would: no address or attribute appears in any column.
func TestEncryptedAtRest(t *testing.T) {
	f := newFixture(t)
	ctx, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "secret.person@example.test", Attributes: []byte(`{"first_name":"Zebedee"}`)}
	if err := f.vault.CreateContact(ctx, c); err != nil {
		t.Fatal(err)
	}
	f.log.Close()
	raw := storetest.Dump(t, f.db)
	for _, s := range []string{"secret.person", "example.test", "Zebedee"} {
		if strings.Contains(raw, s) {
			t.Errorf("database file contains %q in plaintext", s)
		}
	}
}

// TestCiphertextBoundToRow: a ciphertext moved to another contact's row
// does not decrypt (associated data binds it to tenant and token).
func TestCiphertextBoundToRow(t *testing.T) {
	f := newFixture(t)
	ctx, tenant, list := f.admin(t)
	a := &custos.Contact{TenantID: tenant, ListID: list, Email: "a@example.test"}
	b := &custos.Contact{TenantID: tenant, ListID: list, Email: "b@example.test"}
	for _, c := range []*custos.Contact{a, b} {
		if err := f.vault.CreateContact(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.db.Write.Exec(`UPDATE contacts SET email = (SELECT email FROM contacts WHERE token = $1) WHERE token = $2`, a.Token, b.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.Contact(ctx, tenant, b.Token); err == nil {
		t.Fatal("a ciphertext swapped between rows decrypted")
	}
}

// TestChangeAndRecordAtomic: when the log cannot be written, the change
// is not made either (invariant 2), and the caller gets EUNAVAILABLE.
func TestChangeAndRecordAtomic(t *testing.T) {
	f := newFixture(t)
	ctx, tenant, list := f.admin(t)
	heal := storetest.FailInserts(t, f.db, storetest.LogTable(f.db))
	err := f.vault.CreateContact(ctx, &custos.Contact{TenantID: tenant, ListID: list, Email: "x@example.test"})
	if custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Fatalf("create with a broken log: err = %v, want EUNAVAILABLE", err)
	}
	var n int
	f.db.Read.QueryRow(`SELECT count(*) FROM contacts`).Scan(&n)
	if n != 0 {
		t.Fatalf("contact committed without its leaf")
	}
	// Reads fail closed too.
	if _, err := f.vault.Lists(ctx, tenant); custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Fatalf("read with a broken log: err = %v, want EUNAVAILABLE", err)
	}
	heal()
	if err := f.vault.CreateContact(ctx, &custos.Contact{TenantID: tenant, ListID: list, Email: "x@example.test"}); err != nil {
		t.Fatalf("after the log recovers: %v", err)
	}
}

func TestImportAbortReportsWhereItStopped(t *testing.T) {
	f := newFixture(t)
	ctx, tenant, list := f.admin(t)
	var sb strings.Builder
	sb.WriteString("email\n")
	for i := 0; i < 25; i++ {
		sb.WriteString("user" + string(rune('a'+i)) + "@example.test\n")
	}
	sb.WriteString("\"unterminated\n") // a structural CSV error on line 27
	r, err := newCSV(sb.String())
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.vault.Import(ctx, tenant, list, r, vault.ImportOptions{BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Aborted || res.Imported != 25 || res.CommittedThroughLine != 26 {
		t.Fatalf("result = %+v; want aborted after committing lines 2..26", res)
	}
	var n int
	f.db.Read.QueryRow(`SELECT count(*) FROM contacts`).Scan(&n)
	if n != 25+vault.DefaultCanaries {
		t.Fatalf("%d contacts stored, want 25 and the list's %d canaries", n, vault.DefaultCanaries)
	}
}
