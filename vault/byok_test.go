package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/receipt"
	"github.com/custos-dev/custos/vault"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// eventually polls cond until it holds or a bound (far above the TTL) runs
// out: the test waits for an outcome, it asserts no timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 20 s", what)
}

func topicCount(t *testing.T, f *fixture, tenant, topic string) int {
	t.Helper()
	n := 0
	for _, m := range outbox(t, f) {
		if m.TenantID == tenant && m.Topic == topic {
			n++
			if !strings.Contains(strings.Join(m.To, ","), notify.ToTenantAdmins) {
				t.Errorf("%s notice goes to %v, not the tenant's admins", topic, m.To)
			}
		}
	}
	return n
}

func actionCount(t *testing.T, f *fixture, tenant string, action custos.Action) int {
	t.Helper()
	n := 0
	for _, l := range leaves(t, f) {
		if l.Tenant == tenant && l.Action == string(action) {
			n++
		}
	}
	return n
}

// setTenantKey has admin ask for the tenant's own key uri and a second
// tenant admin (another person) approve it, so that it takes effect now
// (keychange.go), and returns the tenant's key setting.
func (f *fixture) setTenantKey(t *testing.T, admin context.Context, tenant, uri string) *custos.TenantKey {
	t.Helper()
	c, err := f.vault.SetTenantKey(admin, tenant, &custos.TenantKeyRequest{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != custos.KeyChangeScheduled || c.Op != custos.KeyChangeSet {
		t.Fatalf("set: %+v", c)
	}
	return f.approveKeyChange(t, tenant, c.ID)
}

// clearTenantKey is setTenantKey's for a clear.
func (f *fixture) clearTenantKey(t *testing.T, admin context.Context, tenant string) *custos.TenantKey {
	t.Helper()
	c, err := f.vault.ClearTenantKey(admin, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return f.approveKeyChange(t, tenant, c.ID)
}

func (f *fixture) approveKeyChange(t *testing.T, tenant, change string) *custos.TenantKey {
	t.Helper()
	f.seconds++
	second, _ := f.principal(t, custos.KindTenantAdmin, tenant, fmt.Sprintf("second-admin-%d", f.seconds))
	k, err := f.vault.ApproveTenantKeyChange(second, tenant, change)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBYOKRevokeFailsClosedAndRecovers is issue 22's BYOK test with a 1 s
// tenant key TTL: a tenant admin wraps its keys under its own key on a
// test KMS; revoking custos's access makes reads of its data fail closed
// with key_unavailable (each refusal audited, the outage recorded and
// announced once), other tenants unaffected; restoring it makes reads work
// again without a restart. The stored keyset does not open with custos's
// KEK alone while the tenant's key is set, and no entry names the URI.
func TestBYOKRevokeFailsClosedAndRecovers(t *testing.T) {
	st := vaulttest.Open(t, vault.Options{TenantKeyTTL: time.Second})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault}
	f.bootstrap(t)
	v := f.vault
	ctxA, tA, listA := f.admin(t)
	ctxB, tB, listB := f.admin(t)
	cA := &custos.Contact{TenantID: tA, ListID: listA, Email: "ada@byok.test"}
	cB := &custos.Contact{TenantID: tB, ListID: listB, Email: "bob@other.test"}
	if err := v.CreateContact(ctxA, cA); err != nil {
		t.Fatal(err)
	}
	if err := v.CreateContact(ctxB, cB); err != nil {
		t.Fatal(err)
	}
	kms := kmstest.New(t)
	uri := kms.URI("acme")

	// Nobody but the tenant's own admin sets or clears its key.
	for name, ctx := range map[string]context.Context{"operator": f.ctx, "another tenant's admin": ctxB} {
		if _, err := v.SetTenantKey(ctx, tA, &custos.TenantKeyRequest{URI: uri}); custos.ErrorCode(err) != custos.EFORBIDDEN {
			t.Errorf("%s sets the tenant's key: %v, want forbidden", name, err)
		}
	}
	// A key custos cannot use is refused before anything changes.
	kms.Revoke()
	if _, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: uri}); custos.ErrorCode(err) != custos.EKEYUNAVAILABLE {
		t.Fatalf("set a key custos cannot use: %v, want key_unavailable", err)
	}
	kms.Restore()
	for _, bad := range []string{"local:///tmp/kek.json", "test-kms://user:pw@host/k", kms.URI("x") + "?token=1", "nokms://k/1"} {
		if _, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: bad}); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("set %q: %v, want invalid", bad, err)
		}
	}

	k := f.setTenantKey(t, ctxA, tA, uri)
	if k.Managed != custos.KeyManagedByTenant || k.Kind != "tenant-kms:test-kms" || k.State != custos.KeyAvailable {
		t.Fatalf("set: %+v", k)
	}
	if n := topicCount(t, f, tA, vault.TopicTenantKeySet); n != 1 {
		t.Errorf("%d tenant_key.set notices, want 1", n)
	}
	// The database's keyset no longer opens with custos's KEK alone.
	blob := storetest.Column[[]byte](t, f.db.Read, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tA)
	if _, err := keys.NewKeyring(st.KEK).Unwrap(tA, blob[0], nil); err == nil {
		t.Fatal("the tenant's keyset opens with custos's KEK alone")
	}
	if got, err := v.Contact(ctxA, tA, cA.Token); err != nil || got.Email != cA.Email {
		t.Fatalf("read under the tenant's key: %v, %v", got, err)
	}

	// Revoked: within the TTL, reads fail closed with key_unavailable.
	kms.Revoke()
	eventually(t, "reads fail with key_unavailable after the revocation", func() bool {
		c, err := v.Contact(ctxA, tA, cA.Token)
		if err == nil && c.Email != cA.Email {
			t.Fatal("a read returned a wrong contact")
		}
		return custos.ErrorCode(err) == custos.EKEYUNAVAILABLE
	})
	if _, err := v.Contacts(ctxA, tA, listA, "", 10); custos.ErrorCode(err) != custos.EKEYUNAVAILABLE {
		t.Errorf("list the tenant's contacts while its key is revoked: %v", err)
	}
	if _, err := v.Lookup(ctxA, tA, listA, cA.Email); custos.ErrorCode(err) != custos.EKEYUNAVAILABLE {
		t.Errorf("look up while the key is revoked: %v", err)
	}
	// Reads go on failing past the retry window (the KMS is asked again,
	// and refuses again): still one outage entry and one notice.
	calls := kms.Calls()
	eventually(t, "the KMS is asked again", func() bool {
		_, err := v.Contact(ctxA, tA, cA.Token)
		if custos.ErrorCode(err) != custos.EKEYUNAVAILABLE {
			t.Fatalf("read while revoked: %v", err)
		}
		return kms.Calls() > calls
	})
	if n := actionCount(t, f, tA, custos.ActionTenantKeyUnavailable); n != 1 {
		t.Errorf("%d tenant_key.unavailable entries, want 1 for one outage", n)
	}
	if n := topicCount(t, f, tA, vault.TopicTenantKeyUnavailable); n != 1 {
		t.Errorf("%d tenant_key.unavailable notices, want 1 for one outage", n)
	}
	refused := 0
	for _, l := range leaves(t, f) {
		if l.Tenant == tA && l.Action == string(custos.ActionContactRead) && l.Code == custos.EKEYUNAVAILABLE {
			if l.Outcome != audit.OutcomeError {
				t.Errorf("refused read recorded as %s", l.Outcome)
			}
			refused++
		}
	}
	if refused < 2 {
		t.Errorf("%d refused reads recorded with key_unavailable, want every one", refused)
	}
	if k, err := v.TenantKey(ctxA, tA); err != nil || k.State != custos.KeyUnavailable || k.UnavailableSince == nil {
		t.Errorf("key state while revoked: %+v, %v", k, err)
	}
	// Another tenant is unaffected.
	if got, err := v.Contact(ctxB, tB, cB.Token); err != nil || got.Email != cB.Email {
		t.Fatalf("other tenant's read during the outage: %v", err)
	}
	// No one can take the tenant off its key while it refuses custos.
	if _, err := v.ClearTenantKey(ctxA, tA); custos.ErrorCode(err) != custos.EKEYUNAVAILABLE {
		t.Errorf("clear while the key is revoked: %v, want key_unavailable", err)
	}

	// Restored: reads work again, without a restart.
	kms.Restore()
	eventually(t, "reads work again after the restore", func() bool {
		got, err := v.Contact(ctxA, tA, cA.Token)
		return err == nil && got.Email == cA.Email
	})
	if n := actionCount(t, f, tA, custos.ActionTenantKeyRestored); n != 1 {
		t.Errorf("%d tenant_key.restored entries, want 1", n)
	}
	if n := topicCount(t, f, tA, vault.TopicTenantKeyRestored); n != 1 {
		t.Errorf("%d tenant_key.restored notices, want 1", n)
	}
	if k, err := v.TenantKey(ctxA, tA); err != nil || k.State != custos.KeyAvailable || k.URI != uri {
		t.Errorf("key state after the restore: %+v, %v", k, err)
	}

	// Clearing: only the admin; then custos's KEK alone opens the keys,
	// and the tenant's key no longer matters.
	if _, err := v.ClearTenantKey(f.ctx, tA); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("operator clears the tenant's key: %v, want forbidden", err)
	}
	if k := f.clearTenantKey(t, ctxA, tA); k.Managed != custos.KeyManagedByCustos {
		t.Fatalf("clear: %+v", k)
	}
	if n := topicCount(t, f, tA, vault.TopicTenantKeyCleared); n != 1 {
		t.Errorf("%d tenant_key.cleared notices, want 1", n)
	}
	blob = storetest.Column[[]byte](t, f.db.Read, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tA)
	if _, err := keys.NewKeyring(st.KEK).Unwrap(tA, blob[0], nil); err != nil {
		t.Fatalf("after clearing, custos's KEK does not open the keys: %v", err)
	}
	kms.Revoke()
	if got, err := v.Contact(ctxA, tA, cA.Token); err != nil || got.Email != cA.Email {
		t.Fatalf("read after clearing, the old key revoked: %v", err)
	}

	// No entry names the URI or an address; each names its key by digest.
	for _, l := range leaves(t, f) {
		b, _ := json.Marshal(l)
		for _, secret := range []string{uri, "acme", cA.Email, cB.Email} {
			if strings.Contains(string(b), secret) {
				t.Errorf("entry %s holds %q: %s", l.Action, secret, b)
			}
		}
	}
}

// TestBYOKReceiptNamesTenantKey: a list deleted while its tenant's keys
// are under the tenant's own key gets a receipt whose kek line says so
// (tenant-kms:SCHEME): the tenant can shred backups by disabling its key.
func TestBYOKReceiptNamesTenantKey(t *testing.T) {
	st := vaulttest.Open(t, vault.Options{})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault}
	f.bootstrap(t)
	ctx, tenant, list := f.admin(t)
	kms := kmstest.New(t)
	f.setTenantKey(t, ctx, tenant, kms.URI("acme"))
	r, err := f.vault.DeleteList(ctx, tenant, list)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := receipt.Verify([]byte(r.File), st.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if s.KEK != keys.KEKTenantKMS+kmstest.Scheme {
		t.Fatalf("receipt kek %q, want %s%s", s.KEK, keys.KEKTenantKMS, kmstest.Scheme)
	}
}

// TestRotationKeepsTheTenantsKey: rotating the data keys of a tenant on
// its own KMS key, and retiring the old index key after the rewrap, keep
// the tenant's layer — the stored keyset still does not open with custos's
// KEK alone — and its contacts stay readable; while the tenant's key is
// revoked, a rotation fails closed with key_unavailable and changes nothing.
func TestRotationKeepsTheTenantsKey(t *testing.T) {
	st := vaulttest.Open(t, vault.Options{TenantKeyTTL: time.Second})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault}
	f.bootstrap(t)
	v := f.vault
	ctxA, tA, listA := f.admin(t)
	c := &custos.Contact{TenantID: tA, ListID: listA, Email: "ada@byok.test"}
	if err := v.CreateContact(ctxA, c); err != nil {
		t.Fatal(err)
	}
	kms := kmstest.New(t)
	f.setTenantKey(t, ctxA, tA, kms.URI("acme"))
	keyset := func() []byte {
		return storetest.Column[[]byte](t, f.db.Read, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tA)[0]
	}
	layered := func(when string) {
		t.Helper()
		if _, err := keys.NewKeyring(st.KEK).Unwrap(tA, keyset(), nil); err == nil {
			t.Fatalf("%s: the tenant's keyset opens with custos's KEK alone", when)
		}
		if got, err := v.Contact(ctxA, tA, c.Token); err != nil || got.Email != c.Email {
			t.Fatalf("%s: read: %v, %v", when, got, err)
		}
	}

	kms.Revoke()
	before := keyset()
	eventually(t, "a rotation under a revoked key fails closed", func() bool {
		_, err := v.RotateDataKeys(ctxA, tA)
		return custos.ErrorCode(err) == custos.EKEYUNAVAILABLE
	})
	if !bytes.Equal(keyset(), before) {
		t.Fatal("a refused rotation changed the stored keyset")
	}
	kms.Restore()
	eventually(t, "reads after the restore", func() bool { _, err := v.Contact(ctxA, tA, c.Token); return err == nil })

	if _, err := v.RotateDataKeys(ctxA, tA); err != nil {
		t.Fatal(err)
	}
	layered("after the rotation")
	if _, err := v.StartRewrap(ctxA, tA); err != nil {
		t.Fatal(err)
	}
	if res, err := v.Rewrap(context.Background(), tA, 0); err != nil || !res.Finished {
		t.Fatalf("rewrap: %+v, %v", res, err)
	}
	if s, err := v.DataKeys(ctxA, tA); err != nil || s.State != custos.DataKeysCurrent {
		t.Fatalf("after the rewrap: %+v, %v", s, err)
	}
	layered("after the rewrap retired the old index key")
}

// TestKEKRotationKeepsTheTenantsKey: a KEK rotation (kek_previous beside
// the new kek) reads a tenant on its own KMS key before and after its
// keyset is re-wrapped, and the re-wrap keeps the tenant's layer: the
// keyset then opens with the new KEK inside the tenant's key, not with
// either KEK alone. With the tenant's key revoked, the re-wrap stops on
// that tenant and leaves its row as it was.
func TestKEKRotationKeepsTheTenantsKey(t *testing.T) {
	st := vaulttest.Open(t, vault.Options{TenantKeyTTL: time.Second, KEKTag: "tag-a"})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault}
	f.bootstrap(t)
	if err := f.vault.TagKEK(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctxA, tA, listA := f.admin(t)
	c := &custos.Contact{TenantID: tA, ListID: listA, Email: "ada@byok.test"}
	if err := f.vault.CreateContact(ctxA, c); err != nil {
		t.Fatal(err)
	}
	kms := kmstest.New(t)
	f.setTenantKey(t, ctxA, tA, kms.URI("acme"))
	kekA, kekB := st.KEK, vaulttest.KEK(t)
	v := vault.New(st.DB.Read, st.DB.Write, st.Log, keys.NewRotatingKeyring(kekB, kekA), vault.Options{TenantKeyTTL: time.Second,
		Placeholders: st.DB.Placeholders, LogSigner: st.Signer, LogVerifier: st.Verifier,
		KEK: "vendor-kms:test", KEKTag: "tag-b", PreviousKEK: keys.KEKVendorLocal, PreviousKEKTag: "tag-a"})
	read := func(when string) {
		t.Helper()
		if got, err := v.Contact(ctxA, tA, c.Token); err != nil || got.Email != c.Email {
			t.Fatalf("%s: read: %v, %v", when, got, err)
		}
	}
	keyset := func() []byte {
		return storetest.Column[[]byte](t, f.db.Read, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tA)[0]
	}
	read("before the re-wrap (old KEK inside the tenant's key)")

	kms.Revoke()
	before := keyset()
	if _, err := v.RewrapKEK(context.Background(), nil); err == nil || !strings.Contains(err.Error(), tA) {
		t.Fatalf("a re-wrap with the tenant's key revoked: %v, want it stopped on that tenant", err)
	}
	if !bytes.Equal(keyset(), before) {
		t.Fatal("a stopped re-wrap changed the tenant's keyset")
	}
	kms.Restore()

	for {
		r, err := v.RewrapKEK(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Remaining == 0 {
			break
		}
	}
	read("after the re-wrap")
	for name, kek := range map[string]tink.AEAD{"the new KEK": kekB, "the old KEK": kekA} {
		if _, err := keys.NewKeyring(kek).Unwrap(tA, keyset(), nil); err == nil {
			t.Fatalf("after the re-wrap the tenant's keyset opens with %s alone", name)
		}
	}
	tkms, err := keys.OpenTenantKMS(kms.URI("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.NewKeyring(kekB).Unwrap(tA, keyset(), tkms); err != nil {
		t.Fatalf("the new KEK inside the tenant's key does not open the re-wrapped keyset: %v", err)
	}
}
