package vault_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/postgres"
	"github.com/custos-dev/custos/vault"
)

// Issue 18: the authentication cache. Each test authenticates a key twice
// first (the second time from the cache), then changes what the key may
// do and expects the very next request to see it.

// keyOf authenticates secret on v and returns its key id.
func keyOf(t *testing.T, v *vault.Vault, secret string) string {
	t.Helper()
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	_, k, err := v.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

func authOn(v *vault.Vault, secret string) error {
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	_, _, err := v.Authenticate(ctx, secret)
	return err
}

// warm authenticates secret a few times, so that it is cached.
func warm(t *testing.T, v *vault.Vault, secret string) {
	t.Helper()
	for range 3 {
		if err := authOn(v, secret); err != nil {
			t.Fatalf("a valid key: %v", err)
		}
	}
}

func TestAuthCacheRevokeSeenNextRequest(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, _, secret := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	id := keyOf(t, f.vault, secret)
	warm(t, f.vault, secret)
	if err := f.vault.RevokeKey(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a revoked key's next request", f.authenticate(secret), custos.EUNAUTHORIZED)
}

func TestAuthCacheSuspendSeenNextRequest(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	sec, _, _ := f.principalSecret(t, custos.KindStaffSecurity, "", "sec")
	_, ed, secret := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	warm(t, f.vault, secret)
	if err := f.vault.SetSuspended(sec, ed.ID, true, "SEC-1"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a suspended principal's next request", f.authenticate(secret), custos.EUNAUTHORIZED)
	// Lifting the suspension is seen at once too (a second party lifts it
	// where the rules ask for one; here the suspender may).
	if err := f.vault.SetSuspended(sec, ed.ID, false, "SEC-1 cleared"); err != nil {
		t.Fatal(err)
	}
	if err := f.authenticate(secret); err != nil {
		t.Fatalf("after the suspension is lifted: %v", err)
	}
}

func TestAuthCacheExpirySeenNextRequest(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	p := &custos.Principal{Kind: custos.KindTenantEditor, TenantID: tenant, Name: "ed", Owner: "ed", Identity: "ed@corp.test"}
	e, err := f.vault.CreatePrincipal(f.ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	f.approvers.Settle(t, e)
	secret := enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{}) // the default lifetime
	warm(t, f.vault, secret)
	f.clock.Advance(vault.DefaultKeyLifetime - time.Second)
	if err := f.authenticate(secret); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	f.clock.Advance(time.Second)
	wantCode(t, "an expired key's next request", f.authenticate(secret), custos.EUNAUTHORIZED)
}

// TestAuthCacheHandEditSeen: a change made in the database, not through
// custos, invalidates the cache as well: a key row whose MAC a hand broke
// is refused on the next request and alerted, as without a cache.
func TestAuthCacheHandEditSeen(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, _, secret := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	id := keyOf(t, f.vault, secret)
	warm(t, f.vault, secret)
	f.exec(t, `UPDATE api_keys SET scopes = $1 WHERE id = $2`, string(custos.ScopeAll)+" "+string(custos.ScopeContactsRead), id)
	wantCode(t, "a key whose row a hand changed", f.authenticate(secret), custos.EUNAUTHORIZED)
	f.integrityAlerted(t, "api_keys", id)
}

// TestAuthCacheLegacyBindingSeen: the cache keeps a principal's binding
// in principal_certs (the legacy row, before principals carried their
// pin) with its key, so the table is not read per request — and a hand
// that changes that row is seen on the very next request all the same:
// the changed pin fails its row's MAC, the key is refused even with the
// certificate it was bound to, and the row-integrity alert is raised.
// Without migration 0052's triggers the cached pin would let it in.
func TestAuthCacheLegacyBindingSeen(t *testing.T) {
	f := newFixture(t)
	pin := strings.Repeat("c", 64)
	ctx, p, secret := f.principalSecret(t, custos.KindOperator, "", "legacy-bound")
	if _, err := f.vault.BindCertificate(withPin(ctx, pin), p.ID); err != nil {
		t.Fatal(err)
	}
	// As a database from before migration 0035 holds it: the binding row
	// only, the principal's row without a pin and MACed so.
	f.exec(t, `UPDATE principals SET cert_pin = NULL WHERE id = $1`, p.ID)
	if err := f.vault.Reseal(context.Background(), "principals", p.ID); err != nil {
		t.Fatal(err)
	}
	auth := func(pin string) error {
		ctx := withPin(custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)}), pin)
		_, _, err := f.vault.Authenticate(ctx, secret)
		return err
	}
	for range 3 {
		if err := auth(pin); err != nil {
			t.Fatalf("the bound key with its certificate: %v", err)
		}
	}
	wantCode(t, "the bound key without its certificate, cached", auth(""), custos.EUNAUTHORIZED)
	f.exec(t, `UPDATE principal_certs SET spki_sha256 = $1 WHERE principal_id = $2`, strings.Repeat("d", 64), p.ID)
	wantCode(t, "the key with its certificate after a hand changed the binding row", auth(pin), custos.EUNAUTHORIZED)
	f.integrityAlerted(t, "principal_certs", p.ID)
}

// dropAuthTriggers removes what invalidates the cache, as someone with
// write access to the database could.
func dropAuthTriggers(t *testing.T, f *fixture) {
	t.Helper()
	if storetest.Engine() == storetest.Postgres {
		f.exec(t, `DROP TRIGGER api_keys_auth_epoch ON api_keys`)
		f.exec(t, `DROP TRIGGER principals_auth_epoch ON principals`)
		f.exec(t, `DROP TRIGGER principal_certs_auth_epoch ON principal_certs`)
		return
	}
	for _, tr := range []string{"api_keys_auth_epoch_update", "api_keys_auth_epoch_delete", "principals_auth_epoch_update", "principals_auth_epoch_delete",
		"principal_certs_auth_epoch_insert", "principal_certs_auth_epoch_update", "principal_certs_auth_epoch_delete"} {
		f.exec(t, `DROP TRIGGER `+tr)
	}
}

// TestAuthCacheCounterUnreadable: when the counter cannot be read, no
// cached key is used — the request takes the uncached path, which sees a
// revocation the counter never recorded.
func TestAuthCacheCounterUnreadable(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, _, secret := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	id := keyOf(t, f.vault, secret)
	warm(t, f.vault, secret)
	dropAuthTriggers(t, f)
	f.exec(t, `DROP TABLE auth_epoch`)
	if err := f.vault.RevokeKey(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a revoked key, the counter gone", f.authenticate(secret), custos.EUNAUTHORIZED)
}

// TestAuthCacheTTLBoundsStoppedCounter: someone with database access who
// stops the counter (drops its triggers) keeps a revoked key working from
// a node's cache for at most the cache's lifetime, not for good.
func TestAuthCacheTTLBoundsStoppedCounter(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, _, secret := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	id := keyOf(t, f.vault, secret)
	warm(t, f.vault, secret)
	dropAuthTriggers(t, f)
	if err := f.vault.RevokeKey(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(31 * time.Second) // past the cache's lifetime (30 s)
	wantCode(t, "a revoked key past the cache's lifetime", f.authenticate(secret), custos.EUNAUTHORIZED)
}

// TestAuthCacheRevokeSeenOnOtherNode: two nodes over one PostgreSQL; a
// key cached on node B is refused by B on the very next request after
// node A revokes it, and likewise after A suspends its principal.
func TestAuthCacheRevokeSeenOnOtherNode(t *testing.T) {
	if storetest.Engine() != storetest.Postgres {
		t.Skip("two nodes need PostgreSQL (set CUSTOS_TEST_POSTGRES)")
	}
	ctx := context.Background()
	st := vaulttest.Open(t, vault.Options{}) // node A
	db2, err := postgres.Open(ctx, st.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	vb := vault.New(db2.Read, db2.Write, st.OpenLog(t, db2.Read, db2.Write, true), keys.NewKeyring(st.KEK), vault.Options{Placeholders: st.DB.Placeholders})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: &fakeClock{t: time.Now()}}
	f.bootstrap(t)
	_, tenant, _ := f.admin(t)
	sec, _, _ := f.principalSecret(t, custos.KindStaffSecurity, "", "sec")
	_, _, revoked := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	_, sp, suspended := f.principalSecret(t, custos.KindTenantEditor, tenant, "eve")
	id := keyOf(t, vb, revoked)
	warm(t, vb, revoked)
	warm(t, vb, suspended)
	if err := f.vault.RevokeKey(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "node B, a key node A revoked", authOn(vb, revoked), custos.EUNAUTHORIZED)
	if err := authOn(vb, suspended); err != nil {
		t.Fatalf("node B, another key: %v", err)
	}
	if err := f.vault.SetSuspended(sec, sp.ID, true, "SEC-2"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "node B, a principal node A suspended", authOn(vb, suspended), custos.EUNAUTHORIZED)
}

// BenchmarkAuthenticate is Authenticate for a valid key, uncached (the
// join and two row MACs: what every request paid before issue 18) and
// cached (one read of the counter), in the same run.
func BenchmarkAuthenticate(b *testing.B) {
	st := vaulttest.Open(b, vault.Options{})
	_, secret, err := st.Vault.Bootstrap(context.Background(), "op", "op@vendor.test")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		off  bool
	}{{"cache=off", true}, {"cache=on", false}} {
		b.Run(bc.name, func(b *testing.B) {
			vault.SetAuthCacheOff(st.Vault, bc.off)
			ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := st.Vault.Authenticate(ctx, secret); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
