package vault_test

import (
	"context"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/vault"
)

// backupRows is what a database backup taken before a tenant's deletion
// holds of one contact: its ciphertext columns and, unless the backup
// left those tables out, the tenant's wrapped keyset row and its list's
// as they were.
type backupRows struct {
	email, attrs []byte
	keyset       []byte // tenant_keys.keyset; nil for a backup without it
	listKeyset   []byte // list_keys.keyset (decoded), wrapped under the tenant's
}

// The associated data the vault seals a contact's columns with
// (vault/contact.go adEmail, adAttrs): a backup's reader needs it too. If
// the vault's format changes, the "backup with its keyset" case below
// fails loudly rather than passing for the wrong reason.
func adEmail(tenant, token string) []byte { return []byte(tenant + "/" + token + "/email") }
func adAttrs(tenant, token string) []byte { return []byte(tenant + "/" + token + "/attributes") }

// TestBackupAfterTenantDeletion takes a "backup" of a contact's ciphertext
// rows and of its tenant's wrapped keyset, deletes the tenant (through its
// grace period, on the vault's clock), and shows what crypto-shredding
// does and does not do for backups:
//
//   - the live database no longer holds any key that opens the backed-up
//     ciphertext: the tenant's keyset row and its lists' are gone and no
//     keyset left in the database (another tenant's, another list's)
//     opens it, so restoring the contact rows alone yields no plaintext;
//   - a backup that also holds the old wrapped keyset still opens them
//     while the KEK that wrapped it lives. Crypto-shredding protects a
//     backup only if the backup does not hold the tenant_keys row, or the
//     KEK that wrapped it is destroyed (a KMS key the tenant controls and
//     disables, or a retired, destroyed KEK version) — docs/deletion.md,
//     "Caveat — backups of the keyset itself". The receipt does not prove
//     otherwise; bounding backup retention does;
//   - once that KEK is gone (here: a keyring with any other KEK), the
//     backed-up keyset does not unwrap and the ciphertext stays shut.
func TestBackupAfterTenantDeletion(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	admin, tenant, list := f.admin(t)
	otherAdmin, other, otherList := f.admin(t)
	const email, attrs = "backed.up.person@example.test", `{"first_name":"Ottoline"}`
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: email, Attributes: []byte(attrs)}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	// Another tenant stays, so the live database still holds a keyset.
	if err := f.vault.CreateContact(otherAdmin, &custos.Contact{TenantID: other, ListID: otherList, Email: "stays@example.test"}); err != nil {
		t.Fatal(err)
	}

	// The backup, as a dump of the two tables would hold it.
	var b backupRows
	if err := f.db.Read.QueryRowContext(ctx, `SELECT email, attributes FROM contacts WHERE token = $1 AND tenant_id = $2`, c.Token, tenant).Scan(&b.email, &b.attrs); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Read.QueryRowContext(ctx, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&b.keyset); err != nil {
		t.Fatal(err)
	}
	b.listKeyset = storedListKeyset(t, f.db, list)
	if len(b.email) == 0 || len(b.attrs) == 0 || len(b.keyset) == 0 || len(b.listKeyset) == 0 {
		t.Fatalf("backup rows empty: email %d, attributes %d, keyset %d, list keyset %d bytes", len(b.email), len(b.attrs), len(b.keyset), len(b.listKeyset))
	}
	// openBackup opens the backed-up ciphertext with the list's keyset
	// unwrapped under the tenant keyset wrapped, itself unwrapped by a
	// fresh keyring (no cache) under kek, as whoever restores a backup
	// would.
	openBackup := func(kek *keys.Keyring, keysetOf string, wrapped []byte) (string, string, error) {
		tk, err := kek.Tenant(keysetOf, wrapped)
		if err != nil {
			return "", "", err
		}
		k, err := tk.List(list, b.listKeyset)
		if err != nil {
			return "", "", err
		}
		e, err := k.Open(b.email, adEmail(tenant, c.Token))
		if err != nil {
			return "", "", err
		}
		a, err := k.Open(b.attrs, adAttrs(tenant, c.Token))
		return string(e), string(a), err
	}
	// Before the deletion the backup opens: the check below can fail.
	if e, a, err := openBackup(keys.NewKeyring(st.KEK), tenant, b.keyset); err != nil || e != email || a != attrs {
		t.Fatalf("backup before the deletion: %v (plaintext matches: %v)", err, e == email && a == attrs)
	}

	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(custos.DefaultDeletionGrace + time.Minute)
	waitLeader(t, f.log)
	if n, err := f.vault.RunDueDeletions(ctx, f.clock.Now()); err != nil || n != 1 {
		t.Fatalf("deletion ran %d, %v", n, err)
	}

	// (a) The live database: no keyset row for the tenant, the vault answers
	// gone, and no keyset the database still holds opens the backed-up
	// ciphertext — restoring the contact rows alone yields no plaintext.
	if n := storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM tenant_keys WHERE tenant_id = $1`, tenant); n[0] != 0 {
		t.Fatalf("%d keyset rows left for the deleted tenant", n[0])
	}
	if n := storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM list_keys WHERE tenant_id = $1`, tenant); n[0] != 0 {
		t.Fatalf("%d list keyset rows left for the deleted tenant", n[0])
	}
	// Every key the live database still yields (other tenants', their
	// lists'), applied directly, opens nothing of the deleted tenant.
	for name, k := range liveKeys(t, f.db, st.KEK) {
		if _, err := k.Open(b.email, adEmail(tenant, c.Token)); err == nil {
			t.Errorf("%s opens the deleted tenant's backed-up ciphertext", name)
		}
	}
	if _, err := f.vault.Contact(admin, tenant, c.Token); custos.ErrorCode(err) != custos.EGONE {
		t.Fatalf("the deleted tenant's contact: %v, want gone", err)
	}
	if _, _, err := openBackup(keys.NewKeyring(st.KEK), tenant, nil); err == nil {
		t.Fatal("the deleted tenant's keys opened without its keyset row")
	}
	type keyRow struct {
		tenant string
		keyset []byte
	}
	rows, err := f.db.Read.QueryContext(ctx, `SELECT tenant_id, keyset FROM tenant_keys`)
	if err != nil {
		t.Fatal(err)
	}
	var live []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.tenant, &r.keyset); err != nil {
			t.Fatal(err)
		}
		live = append(live, r)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(live) == 0 {
		t.Fatal("no keyset left in the database: the check below would prove nothing")
	}
	for _, r := range live {
		// Each remaining keyset, unwrapped as its own tenant's (it opens)
		// and as the deleted tenant's (the KEK's associated data refuses).
		for _, as := range []string{r.tenant, tenant} {
			if _, _, err := openBackup(keys.NewKeyring(st.KEK), as, r.keyset); err == nil {
				t.Errorf("tenant %s's live keyset (as %s's) opens the deleted tenant's backed-up ciphertext", r.tenant, as)
			}
		}
		if _, err := keys.NewKeyring(st.KEK).Tenant(r.tenant, r.keyset); err != nil {
			t.Errorf("tenant %s's own keyset does not unwrap: %v", r.tenant, err)
		}
	}

	// (b) A backup that holds the old wrapped keyset still opens the
	// ciphertext while the KEK lives: crypto-shredding did not reach it.
	// This is the documented limit, asserted so that it stays documented.
	if e, a, err := openBackup(keys.NewKeyring(st.KEK), tenant, b.keyset); err != nil || e != email || a != attrs {
		t.Fatalf("backup with its keyset under the live KEK: %v; expected it to open (docs/deletion.md says it does)", err)
	}

	// (c) With the KEK destroyed (any other KEK), the backed-up keyset is
	// inert and so is the ciphertext.
	if _, _, err := openBackup(keys.NewKeyring(vaulttest.KEK(t)), tenant, b.keyset); err == nil {
		t.Fatal("the backed-up keyset unwrapped under another KEK")
	}
}
