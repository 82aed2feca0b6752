package vault_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/receipt"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
)

// keysFixture is deletionFixture keeping the whole stack (its KEK).
func keysFixture(t *testing.T) (*fixture, *vaulttest.Stack) {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	return f, st
}

// sealedRow is what the database (or a backup of it) holds of a contact.
type sealedRow struct {
	email, attrs, blind []byte
}

func rowOf(t *testing.T, db *store.DB, token string) sealedRow {
	t.Helper()
	var r sealedRow
	if err := db.Read.QueryRow(`SELECT email, attributes, blind_index FROM contacts WHERE token = $1`, token).Scan(&r.email, &r.attrs, &r.blind); err != nil {
		t.Fatal(err)
	}
	return r
}

// storedTenantKeys unwraps tenant's keyset as the database holds it,
// with a fresh keyring (no cache) under kek: what a database reader who
// also holds the KEK gets.
func storedTenantKeys(t *testing.T, db *store.DB, kek tink.AEAD, tenant string) *keys.TenantKeys {
	t.Helper()
	var wrapped []byte
	if err := db.Read.QueryRow(`SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&wrapped); err != nil {
		t.Fatal(err)
	}
	tk, err := keys.NewKeyring(kek).Tenant(tenant, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// storedListKeyset returns a list's wrapped keyset as list_keys holds it,
// or nil if it has none.
func storedListKeyset(t *testing.T, db *store.DB, list string) []byte {
	t.Helper()
	ks := storetest.Column[string](t, db.Read, `SELECT keyset FROM list_keys WHERE list_id = $1`, list)
	if len(ks) == 0 {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(ks[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// liveKeys is every key a reader of the live database who also holds the
// KEK can unwrap: each tenant's keys (as its own tenant, the only way its
// associated data lets them unwrap) and each list's under its tenant's.
func liveKeys(t *testing.T, db *store.DB, kek tink.AEAD) map[string]*keys.DataKeys {
	t.Helper()
	out := map[string]*keys.DataKeys{}
	tks := map[string]*keys.TenantKeys{}
	for _, tenant := range storetest.Column[string](t, db.Read, `SELECT tenant_id FROM tenant_keys`) {
		tk := storedTenantKeys(t, db, kek, tenant)
		tks[tenant] = tk
		out["tenant "+tenant] = &tk.DataKeys
	}
	rows, err := db.Read.Query(`SELECT list_id, tenant_id, keyset FROM list_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var list, tenant, stored string
		if err := rows.Scan(&list, &tenant, &stored); err != nil {
			t.Fatal(err)
		}
		wrapped, _ := base64.StdEncoding.DecodeString(stored)
		tk := tks[tenant]
		if tk == nil {
			t.Fatalf("list %s's keyset has no live tenant keyset", list)
		}
		lk, err := tk.List(list, wrapped)
		if err != nil {
			t.Fatalf("list %s's stored keyset does not unwrap: %v", list, err)
		}
		out["list "+list] = lk
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestListKeysSealContacts: a new list's contacts — added one by one,
// imported, and the canaries planted among them — are sealed under the
// list's own keys: their ciphertexts do not open with the tenant's keys
// and do with the list's, their blind index is the list's PRF, not the
// tenant's, and the same address in two lists of a tenant gets two
// unrelated blind indexes. Every read path opens them.
func TestListKeysSealContacts(t *testing.T) {
	f, st := keysFixture(t)
	admin, tenant, list := f.admin(t)
	other := &custos.List{TenantID: tenant, Name: "other"}
	if err := f.vault.CreateList(admin, other); err != nil {
		t.Fatal(err)
	}
	const email = "sealed.person@example.test"
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: email, Attributes: []byte(`{"first_name":"Wilhelmina"}`)}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	c2 := &custos.Contact{TenantID: tenant, ListID: other.ID, Email: email}
	if err := f.vault.CreateContact(admin, c2); err != nil {
		t.Fatal(err)
	}
	in, err := newCSV("email,first_name\nimported.one@example.test,Ada\nimported.two@example.test,Bo\n")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.vault.Import(admin, tenant, list, in, vault.ImportOptions{}); err != nil || res.Imported != 2 {
		t.Fatalf("import: %+v, %v", res, err)
	}

	tk := storedTenantKeys(t, f.db, st.KEK, tenant)
	wrapped := storedListKeyset(t, f.db, list)
	if wrapped == nil {
		t.Fatal("a new list has no keyset row")
	}
	lk, err := tk.List(list, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	r := rowOf(t, f.db, c.Token)
	if _, err := tk.Open(r.email, adEmail(tenant, c.Token)); err == nil {
		t.Error("the tenant's keys opened a keyed list's contact")
	}
	if pt, err := lk.Open(r.email, adEmail(tenant, c.Token)); err != nil || string(pt) != email {
		t.Errorf("the list's keys: %q, %v", pt, err)
	}
	if pt, err := lk.Open(r.attrs, adAttrs(tenant, c.Token)); err != nil || !strings.Contains(string(pt), "Wilhelmina") {
		t.Errorf("the list's keys, attributes: %v", err)
	}
	if !bytes.Equal(r.blind, lk.BlindIndex(email)) || bytes.Equal(r.blind, tk.BlindIndex(email)) {
		t.Error("the blind index is not the list's PRF of the address")
	}
	if bytes.Equal(r.blind, rowOf(t, f.db, c2.Token).blind) {
		t.Error("one address has the same blind index in two lists of a tenant")
	}
	// Every row of the list — imported ones and canaries included — opens
	// with the list's keys and not with the tenant's.
	tokens := storetest.Column[string](t, f.db.Read, `SELECT token FROM contacts WHERE list_id = $1`, list)
	if len(tokens) < 3+vault.DefaultCanaries {
		t.Fatalf("%d rows in the list; want 3 and the canaries", len(tokens))
	}
	for _, tok := range tokens {
		r := rowOf(t, f.db, tok)
		if _, err := lk.Open(r.email, adEmail(tenant, tok)); err != nil {
			t.Errorf("row %s does not open with its list's keys: %v", tok, err)
		}
		if _, err := tk.Open(r.email, adEmail(tenant, tok)); err == nil {
			t.Errorf("row %s opens with the tenant's keys", tok)
		}
	}

	// The read paths, from a vault that has cached nothing.
	fresh := vault.New(f.db.Read, f.db.Write, f.log, keys.NewKeyring(st.KEK), vault.Options{Placeholders: f.db.Placeholders, Now: f.clock.Now})
	if got, err := fresh.Contact(admin, tenant, c.Token); err != nil || got.Email != email {
		t.Errorf("contact: %+v, %v", got, err)
	}
	if got, err := fresh.Lookup(admin, tenant, list, email); err != nil || got.Token != c.Token {
		t.Errorf("lookup: %+v, %v", got, err)
	}
	if p, err := fresh.Contacts(admin, tenant, list, "", 100); err != nil || len(p.Items) != len(tokens)+vault.DefaultCanaries { // the reader's watermark rows
		t.Errorf("contacts page: %d items, %v", len(p.Items), err)
	}
	changed := "changed.person@example.test"
	if got, err := fresh.UpdateContact(admin, tenant, c.Token, custos.ContactUpdate{Email: &changed}); err != nil || got.Email != changed {
		t.Errorf("update: %+v, %v", got, err)
	}
	if got, err := fresh.Lookup(admin, tenant, list, changed); err != nil || got.Token != c.Token {
		t.Errorf("lookup after update: %+v, %v", got, err)
	}
	n := 0
	if err := fresh.Export(admin, tenant, list, "csv", func(*custos.Contact) error { n++; return nil }); err != nil || n < len(tokens) {
		t.Errorf("export: %d rows, %v", n, err)
	}
}

// TestListDeletionShredsBackups: deleting a list destroys its keyset in
// the list.delete entry's transaction. A backup taken before holds the
// list's ciphertexts and blind indexes; afterwards nothing the live
// database holds — the tenant's keys (alive), every other list's —
// opens them or reproduces their blind index, even for an insider with
// the KEK and a full copy of the database. The receipt names the
// destroyed keyset and verifies offline; the list answers 410 with it.
func TestListDeletionShredsBackups(t *testing.T) {
	f, st := keysFixture(t)
	admin, tenant, list := f.admin(t)
	kept := &custos.List{TenantID: tenant, Name: "kept"}
	if err := f.vault.CreateList(admin, kept); err != nil {
		t.Fatal(err)
	}
	const email, attrs = "shredded.listmember@example.test", `{"first_name":"Perpetua"}`
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: email, Attributes: []byte(attrs)}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	// The same address stays in the kept list: the tenant lives on, and so
	// do its keys and another list's.
	stays := &custos.Contact{TenantID: tenant, ListID: kept.ID, Email: email}
	if err := f.vault.CreateContact(admin, stays); err != nil {
		t.Fatal(err)
	}
	backup := rowOf(t, f.db, c.Token)
	backupKeyset := storedListKeyset(t, f.db, list)
	if backupKeyset == nil {
		t.Fatal("the list has no keyset")
	}
	openWith := func(k *keys.DataKeys) (string, string, error) {
		e, err := k.Open(backup.email, adEmail(tenant, c.Token))
		if err != nil {
			return "", "", err
		}
		a, err := k.Open(backup.attrs, adAttrs(tenant, c.Token))
		return string(e), string(a), err
	}
	// Before: the backup opens with the live keys (the checks below can fail).
	opened := false
	for _, k := range liveKeys(t, f.db, st.KEK) {
		if e, a, err := openWith(k); err == nil && e == email && a == attrs {
			opened = true
		}
	}
	if !opened {
		t.Fatal("the live keys do not open the list's contact before its deletion")
	}

	if raw := []byte(storetest.Dump(t, f.db)); !bytes.Contains(raw, backup.blind) {
		t.Fatal("the dump does not hold the list's blind index before its deletion: the scan below would prove nothing")
	}

	rc, err := f.vault.DeleteList(admin, tenant, list)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := receipt.Verify([]byte(rc.File), st.Verifier)
	if err != nil {
		t.Fatalf("verify receipt: %v", err)
	}
	sum := sha256.Sum256(backupKeyset)
	if s.Scope != custos.DeletionScopeList || s.List != list || s.Keyset != "sha256:"+hex.EncodeToString(sum[:]) ||
		s.KEK != keys.KEKVendorLocal || s.Counts["keysets"] != 1 || s.Counts["contacts"] < 1 {
		t.Fatalf("statement %+v; want the list's keyset digest, KEK vendor-local, keysets 1", s)
	}
	if n := storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM list_keys WHERE list_id = $1`, list); n[0] != 0 {
		t.Fatalf("%d keyset rows left for the deleted list", n[0])
	}
	for what, err := range map[string]error{
		"list":   func() error { _, err := f.vault.List(admin, tenant, list); return err }(),
		"page":   func() error { _, err := f.vault.Contacts(admin, tenant, list, "", 10); return err }(),
		"lookup": func() error { _, err := f.vault.Lookup(admin, tenant, list, email); return err }(),
		"add":    f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "late@example.test"}),
	} {
		if custos.ErrorCode(err) != custos.EGONE || !strings.Contains(custos.ErrorMessage(err), rc.ID) {
			t.Errorf("%s of the deleted list: %v, want gone with receipt %s", what, err, rc.ID)
		}
	}
	// A contact token of the deleted list is not found (its row is gone;
	// a list's receipt does not list its tokens).
	if got, err := f.vault.Contact(admin, tenant, c.Token); err == nil {
		t.Errorf("contact of the deleted list: %+v", got)
	}

	// After: nothing live opens the backup or reproduces its blind index —
	// not the tenant's keys (the insider's "legacy" guess), not another
	// list's. The kept list still reads.
	live := liveKeys(t, f.db, st.KEK)
	if live["tenant "+tenant] == nil || live["list "+kept.ID] == nil {
		t.Fatalf("live keys %v: the tenant's and the kept list's should be there", len(live))
	}
	for name, k := range live {
		if _, _, err := openWith(k); err == nil {
			t.Errorf("%s opens the deleted list's backed-up ciphertext", name)
		}
		if bytes.Equal(k.BlindIndex(email), backup.blind) {
			t.Errorf("%s reproduces the deleted list's backed-up blind index", name)
		}
	}
	if got, err := f.vault.Contact(admin, tenant, stays.Token); err != nil || got.Email != email {
		t.Errorf("the kept list's contact: %+v, %v", got, err)
	}

	// The documented limit: a backup that also holds the list's keyset row
	// opens under the tenant's live keys (docs/deletion.md). Asserted so it
	// stays documented.
	lk, err := storedTenantKeys(t, f.db, st.KEK, tenant).List(list, backupKeyset)
	if err != nil {
		t.Fatal(err)
	}
	if e, a, err := openWith(lk); err != nil || e != email || a != attrs {
		t.Fatalf("backup with its list keyset: %v; expected it to open while the tenant lives", err)
	}

	// Nothing of the deleted list is left in the live database's bytes:
	// not its keyset, not its blind index, not its ciphertexts.
	f.log.Close()
	if f.db.Engine == storetest.SQLite {
		if _, err := f.db.Write.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
	}
	raw := []byte(storetest.Dump(t, f.db))
	for what, b := range map[string][]byte{"blind index": backup.blind, "email ciphertext": backup.email, "attributes ciphertext": backup.attrs,
		"keyset": []byte(base64.StdEncoding.EncodeToString(backupKeyset))} {
		if bytes.Contains(raw, b) || bytes.Contains(raw, []byte(hex.EncodeToString(b))) {
			t.Errorf("the database holds the deleted list's %s", what)
		}
	}
	if bytes.Contains(raw, []byte("Perpetua")) || bytes.Contains(raw, []byte("shredded.listmember")) {
		t.Error("the database holds the deleted list's plaintext")
	}
}

// TestLegacyList: a list created before lists had keys (here: its
// list_keys row removed before any contact, as migration 0014 leaves an
// older list) keeps its contacts under the tenant's keys, reads from a
// vault that cached nothing, and deletes with a receipt that names no
// keyset and counts none.
func TestLegacyList(t *testing.T) {
	f, st := keysFixture(t)
	admin, tenant, list := f.admin(t)
	f.exec(t, `DELETE FROM list_keys WHERE list_id = $1`, list)
	const email = "legacy.person@example.test"
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: email}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	in, err := newCSV("email\nlegacy.imported@example.test\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.Import(admin, tenant, list, in, vault.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	tk := storedTenantKeys(t, f.db, st.KEK, tenant)
	r := rowOf(t, f.db, c.Token)
	if pt, err := tk.Open(r.email, adEmail(tenant, c.Token)); err != nil || string(pt) != email {
		t.Fatalf("a legacy list's contact under the tenant's keys: %q, %v", pt, err)
	}
	fresh := vault.New(f.db.Read, f.db.Write, f.log, keys.NewKeyring(st.KEK), vault.Options{Placeholders: f.db.Placeholders, Now: f.clock.Now,
		LogSigner: st.Signer, LogVerifier: st.Verifier, KEK: keys.KEKVendorLocal})
	if got, err := fresh.Contact(admin, tenant, c.Token); err != nil || got.Email != email {
		t.Fatalf("legacy contact from a fresh vault: %+v, %v", got, err)
	}
	if got, err := fresh.Lookup(admin, tenant, list, "legacy.imported@example.test"); err != nil {
		t.Fatalf("legacy lookup: %+v, %v", got, err)
	}
	rc, err := fresh.DeleteList(admin, tenant, list)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := receipt.Verify([]byte(rc.File), st.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if s.Keyset != "" || s.KEK != "" || s.Counts["keysets"] != 0 || s.Counts["contacts"] < 2 {
		t.Fatalf("legacy list's receipt %+v; want no keyset, keysets 0", s)
	}
	if _, err := fresh.List(admin, tenant, list); custos.ErrorCode(err) != custos.EGONE || !strings.Contains(custos.ErrorMessage(err), rc.ID) {
		t.Fatalf("deleted legacy list: %v, want gone with %s", err, rc.ID)
	}
	if _, err := fresh.Contact(admin, tenant, c.Token); err == nil {
		t.Fatal("a deleted legacy list's contact still reads")
	}
	// What a legacy list's deletion does not shred: its backed-up
	// ciphertext still opens with the tenant's live keys.
	if _, err := tk.Open(r.email, adEmail(tenant, c.Token)); err != nil {
		t.Fatal("expected a legacy list's backup to open under the tenant's keys (docs/deletion.md)")
	}
}

// TestListKeysetRemovedFailsClosed: an insider with write access to the
// database who deletes a keyed list's keyset row (hoping custos falls
// back to the tenant's keys, which they might hold) gets nothing: the
// contacts' row MACs and ciphertexts are the list's, so every read is
// refused, a row.integrity alert is raised, nothing opens, and
// `custos log verify --rows` names the missing row.
func TestListKeysetRemovedFailsClosed(t *testing.T) {
	f, st := keysFixture(t)
	admin, tenant, list := f.admin(t)
	const email = "kept.secret@example.test"
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: email}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `DELETE FROM list_keys WHERE list_id = $1`, list)
	fresh := vault.New(f.db.Read, f.db.Write, f.log, keys.NewKeyring(st.KEK), vault.Options{Placeholders: f.db.Placeholders, Now: f.clock.Now})
	if got, err := fresh.Contact(admin, tenant, c.Token); err == nil {
		t.Fatalf("contact read without its list's keyset: %+v", got)
	}
	f.integrityAlerted(t, "contacts", c.Token)
	// The log committed to the list's keyset at its creation: the data
	// check names the missing row.
	wantFinding(t, f.verifyData(t), vault.FindingDeleted, "list_keys", list)
	if got, err := fresh.Lookup(admin, tenant, list, email); err == nil {
		t.Fatalf("lookup without its list's keyset: %+v", got)
	}
	if p, err := fresh.Contacts(admin, tenant, list, "", 10); err == nil {
		t.Fatalf("page without its list's keyset: %d items", len(p.Items))
	}
	n := 0
	err := fresh.Export(admin, tenant, list, "csv", func(c *custos.Contact) error {
		if c.Email == email {
			n++
		}
		return nil
	})
	if err == nil || n > 0 {
		t.Fatalf("export without its list's keyset: %v, %d real rows", err, n)
	}
}

// TestVerifyDataListKeys: the data check holds the list_keys rows to the
// list.create entries that committed to them: clean as custos wrote them
// (a deleted list's row gone with it included); a keyset row swapped for
// another list's is altered, one no entry created is inserted.
func TestVerifyDataListKeys(t *testing.T) {
	f, _ := keysFixture(t)
	admin, tenant, list := f.admin(t)
	other := &custos.List{TenantID: tenant, Name: "other"}
	if err := f.vault.CreateList(admin, other); err != nil {
		t.Fatal(err)
	}
	gone := &custos.List{TenantID: tenant, Name: "gone"}
	if err := f.vault.CreateList(admin, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.DeleteList(admin, tenant, gone.ID); err != nil {
		t.Fatal(err)
	}
	wantClean(t, f.verifyData(t))

	f.exec(t, `UPDATE list_keys SET keyset = (SELECT keyset FROM list_keys WHERE list_id = $1) WHERE list_id = $2`, other.ID, list)
	forged := custos.NewID(custos.PrefixList)
	f.exec(t, `INSERT INTO list_keys (list_id, tenant_id, keyset, created_at) VALUES ($1, $2, 'AAAA', 0)`, forged, tenant)
	fs := f.verifyData(t)
	wantFinding(t, fs, vault.FindingAltered, "list_keys", list)
	wantFinding(t, fs, vault.FindingInserted, "list_keys", forged)
	for _, fd := range fs {
		if fd.Row == other.ID || fd.Row == gone.ID {
			t.Errorf("an untouched or deleted list is reported: %+v", fd)
		}
	}
}

// TestTenantDeletionShredsEveryList: a tenant with a keyed list and a
// legacy one is deleted: its receipt counts its keyset and the keyed
// list's (keysets 2), no keyset row of the tenant is left, and no key the
// live database yields opens either list's backed-up contact.
func TestTenantDeletionShredsEveryList(t *testing.T) {
	f, st := keysFixture(t)
	admin, tenant, keyed := f.admin(t)
	otherAdmin, other, otherList := f.admin(t) // so that live keys remain
	legacy := &custos.List{TenantID: tenant, Name: "old"}
	if err := f.vault.CreateList(admin, legacy); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `DELETE FROM list_keys WHERE list_id = $1`, legacy.ID)
	var backups []struct {
		token string
		row   sealedRow
	}
	for _, l := range []string{keyed, legacy.ID} {
		c := &custos.Contact{TenantID: tenant, ListID: l, Email: "everywhere@example.test"}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		backups = append(backups, struct {
			token string
			row   sealedRow
		}{c.Token, rowOf(t, f.db, c.Token)})
	}
	if err := f.vault.CreateContact(otherAdmin, &custos.Contact{TenantID: other, ListID: otherList, Email: "everywhere@example.test"}); err != nil {
		t.Fatal(err)
	}
	// Before: each backed-up contact opens with some live key (the keyed
	// list's, the tenant's for the legacy one).
	before := liveKeys(t, f.db, st.KEK)
	for _, b := range backups {
		opened := false
		for _, k := range before {
			if _, err := k.Open(b.row.email, adEmail(tenant, b.token)); err == nil {
				opened = true
			}
		}
		if !opened {
			t.Fatalf("contact %s opens with no live key before the deletion", b.token)
		}
	}
	rc := f.deleteTenantNow(t, admin, tenant)
	s, _, err := receipt.Verify([]byte(rc.File), st.Verifier)
	if err != nil || s.Counts["keysets"] != 2 || s.Counts["lists"] != 2 || s.KEK != keys.KEKVendorLocal {
		t.Fatalf("statement %+v, %v; want keysets 2 (the tenant's, the keyed list's), lists 2", s, err)
	}
	if n := storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM list_keys WHERE tenant_id = $1`, tenant)[0] +
		storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM tenant_keys WHERE tenant_id = $1`, tenant)[0]; n != 0 {
		t.Fatalf("%d keyset rows left for the deleted tenant", n)
	}
	live := liveKeys(t, f.db, st.KEK)
	if len(live) == 0 {
		t.Fatal("no live keys: the check below would prove nothing")
	}
	for _, b := range backups {
		for name, k := range live {
			if _, err := k.Open(b.row.email, adEmail(tenant, b.token)); err == nil {
				t.Errorf("%s opens the deleted tenant's contact %s", name, b.token)
			}
		}
	}
}
