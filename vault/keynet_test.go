package vault_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// Keys bound to networks (issue 20), tried as the thief of a key and as
// the operator who would rather it were not bound.

const (
	pipeline = "10.1.0.0/16"
	inside   = "10.1.2.3"
	outside  = "203.0.113.9"
)

// from authenticates secret as a request from source.
func (f *fixture) from(secret, source string) (*custos.APIKey, error) {
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: source})
	_, k, err := f.vault.Authenticate(ctx, secret)
	return k, err
}

// serviceKey creates a service principal of tenant, has it approved, and
// enrolls it with req; it returns the key's secret.
func (f *fixture) serviceKey(t *testing.T, tenant, owner string, req custos.KeyRequest) string {
	t.Helper()
	e, err := f.vault.CreatePrincipal(f.ctx, &custos.Principal{Kind: custos.KindService, TenantID: tenant, Name: "etl", Owner: owner, Identity: owner + "@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	f.approvers.Settle(t, e)
	return enrolltest.Key(t, f.vault, e.ID, req)
}

// lastAuthLeaf is the newest authenticate entry.
func lastAuthLeaf(t *testing.T, f *fixture) audit.Leaf {
	t.Helper()
	var l audit.Leaf
	if err := json.Unmarshal([]byte(lastLeaf(t, f, custos.ActionAuthenticate)), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestKeyOutsideNetworksRefused: a bound key presented from outside its
// ranges is refused with the very answer an unknown key gets — the thief
// learns nothing, not even that the key is real — and the refusal is on
// the record with the key and its principal.
func TestKeyOutsideNetworksRefused(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	secret := f.serviceKey(t, tenant, "etl", custos.KeyRequest{Networks: []string{pipeline, "2001:db8::/32"}})

	k, err := f.from(secret, inside)
	if err != nil {
		t.Fatalf("from inside its networks: %v", err)
	}
	if !slices.Equal(k.Networks, []string{pipeline, "2001:db8::/32"}) {
		t.Fatalf("key networks %v", k.Networks)
	}
	if _, err := f.from(secret, "2001:db8::7"); err != nil {
		t.Fatalf("from inside its IPv6 range: %v", err)
	}
	if _, err := f.from(secret, "::ffff:"+inside); err != nil {
		t.Fatalf("from inside, IPv4-mapped: %v", err)
	}

	_, unknownErr := f.from(custos.NewAPIKeySecret(), outside)
	for _, src := range []string{outside, "10.2.0.1", "", "not-an-address"} {
		_, err := f.from(secret, src)
		wantCode(t, "the key from "+src, err, custos.EUNAUTHORIZED)
		if err.Error() != unknownErr.Error() {
			t.Fatalf("from %q the key is refused with %q, an unknown key with %q: an oracle", src, err, unknownErr)
		}
		l := lastAuthLeaf(t, f)
		if l.Outcome != audit.OutcomeDenied || l.KeyID != k.ID || l.Actor != k.PrincipalID || !strings.HasPrefix(l.Reason, "API key used from outside its networks") {
			t.Fatalf("the refusal from %q is recorded as %+v", src, l)
		}
	}

	// Revoked, it still answers as unknown from outside.
	if err := f.vault.RevokeKey(f.ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.from(secret, outside); err == nil || err.Error() != unknownErr.Error() {
		t.Fatalf("a revoked bound key from outside: %v; want %v", err, unknownErr)
	}
}

// TestKeyNetworksChecked: ranges are parsed, bounded and made canonical.
func TestKeyNetworksChecked(t *testing.T) {
	got, err := custos.CheckNetworks([]string{"10.1.2.3/16", " 10.1.0.0/16", "::ffff:192.0.2.0/120"})
	if err != nil || !slices.Equal(got, []string{"10.1.0.0/16", "192.0.2.0/24"}) {
		t.Fatalf("CheckNetworks = %v, %v", got, err)
	}
	for _, bad := range [][]string{{"10.1.0.0"}, {"10.1.0.0/33"}, {"example.test/8"}, {strings.Repeat("1", 70)}, slices.Repeat([]string{"10.0.0.0/8"}, custos.MaxKeyNetworks+1)} {
		if _, err := custos.CheckNetworks(bad); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("CheckNetworks(%.40q) = %v, want EINVALID", bad, err)
		}
	}
	for _, c := range []struct {
		inner, outer []string
		want         bool
	}{
		{nil, nil, true},
		{[]string{"10.1.0.0/16"}, nil, true},
		{nil, []string{"10.0.0.0/8"}, false},
		{[]string{"10.1.0.0/16"}, []string{"10.0.0.0/8"}, true},
		{[]string{"10.0.0.0/8"}, []string{"10.1.0.0/16"}, false},
		{[]string{"10.1.0.0/16", "192.0.2.0/24"}, []string{"10.0.0.0/8"}, false},
		{[]string{"::/0"}, []string{"0.0.0.0/0"}, false},
	} {
		if got := custos.NetworksWithin(c.inner, c.outer); got != c.want {
			t.Errorf("NetworksWithin(%v, %v) = %v, want %v", c.inner, c.outer, got, c.want)
		}
	}
}

// TestServiceKeysDefaultToPipeline: with the vendor's pipeline networks
// configured, a service key enrolled without networks is bound to them;
// a staff key is not; a service key enrolled beyond them stands out.
func TestServiceKeysDefaultToPipeline(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now, ServiceNetworks: []string{pipeline}})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	_, tenant, _ := f.admin(t)

	secret := f.serviceKey(t, tenant, "etl", custos.KeyRequest{})
	k, err := f.from(secret, inside)
	if err != nil || !slices.Equal(k.Networks, []string{pipeline}) {
		t.Fatalf("a service key enrolled without networks: %+v, %v; want it bound to %s", k, err, pipeline)
	}
	if _, err := f.from(secret, outside); err == nil {
		t.Fatal("a default-bound service key works from outside the pipeline")
	}
	_, staff := f.principal(t, custos.KindStaffSupport, "", "sam")
	ks, err := f.vault.Keys(f.ctx, staff.ID)
	if err != nil || len(ks) != 1 || len(ks[0].Networks) != 0 {
		t.Fatalf("staff key: %+v, %v; want it unbound", ks, err)
	}

	f.serviceKey(t, tenant, "etl2", custos.KeyRequest{Networks: []string{"198.51.100.0/24"}})
	var l audit.Leaf
	if err := json.Unmarshal([]byte(lastLeaf(t, f, custos.ActionEnroll)), &l); err != nil {
		t.Fatal(err)
	}
	if l.Severity != "high" || !strings.Contains(l.Detail, "beyond the pipeline networks") {
		t.Fatalf("a service key enrolled beyond the pipeline: leaf %+v; want it high", l)
	}
}

// TestKeyNetworksInsider: the operator cannot widen someone else's key —
// refused and recorded — and may only narrow it; a key's own principal may
// widen its key, which is a high entry announced to security, the
// principal and the tenant; a key created with a bound key stays within
// its ranges; ranges changed in the database make the key unusable.
func TestKeyNetworksInsider(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	secret := f.serviceKey(t, tenant, "etl", custos.KeyRequest{Networks: []string{pipeline}})
	k, err := f.from(secret, inside)
	if err != nil {
		t.Fatal(err)
	}

	// The operator widens the service's key so that it works from home.
	_, err = f.vault.SetKeyNetworks(f.ctx, k.ID, []string{pipeline, "198.51.100.0/24"})
	wantCode(t, "operator widening a service's key", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionKeyNetworks, "never widens")
	_, err = f.vault.SetKeyNetworks(f.ctx, k.ID, nil)
	wantCode(t, "operator unbinding a service's key", err, custos.EFORBIDDEN)
	if _, err := f.from(secret, "198.51.100.7"); err == nil {
		t.Fatal("the refused widening took effect")
	}

	// Narrowing, after a theft say, is the operator's to do.
	nk, err := f.vault.SetKeyNetworks(f.ctx, k.ID, []string{"10.1.2.0/24"})
	if err != nil || !slices.Equal(nk.Networks, []string{"10.1.2.0/24"}) {
		t.Fatalf("operator narrowing: %+v, %v", nk, err)
	}
	if _, err := f.from(secret, "10.1.9.9"); err == nil {
		t.Fatal("the narrowed key works from the range it lost")
	}
	if _, err := f.from(secret, inside); err != nil {
		t.Fatal(err)
	}

	// Another tenant's admin hears of the key what it hears of none.
	other, _, _ := f.admin(t)
	_, err = f.vault.SetKeyNetworks(other, k.ID, []string{"10.1.2.0/24"})
	wantCode(t, "another tenant's admin", err, custos.EFORBIDDEN)
	_, errNone := f.vault.SetKeyNetworks(other, custos.NewID(custos.PrefixKey), []string{"10.1.2.0/24"})
	if errNone == nil || errNone.Error() != err.Error() {
		t.Fatalf("another's key: %v; no key: %v — an oracle", err, errNone)
	}
	// The service itself, trying to widen its own key from the key: refused.

	svc := enrolltest.As(t, f.vault, secret, inside)
	if _, err := f.vault.SetKeyNetworks(svc, k.ID, []string{pipeline, "198.51.100.0/24"}); err == nil {
		t.Fatal("a key widened beyond the ranges of the key presented")
	}
	// Nor does it mint an unbound key to widen with: a bound key mints
	// only keys within its ranges.
	_, _, err = f.vault.CreateKey(svc, k.PrincipalID, custos.KeyRequest{Scopes: k.Scopes, Networks: []string{"0.0.0.0/0"}})
	wantCode(t, "a bound key minting an unbound one", err, custos.EFORBIDDEN)
	s2, k2, err := f.vault.CreateKey(svc, k.PrincipalID, custos.KeyRequest{Scopes: k.Scopes})
	if err != nil || !slices.Equal(k2.Networks, []string{"10.1.2.0/24"}) {
		t.Fatalf("a key created with a bound key: %+v, %v; want the presenting key's ranges", k2, err)
	}
	if _, err := f.from(s2, outside); err == nil {
		t.Fatal("the minted key works from outside")
	}

	// A principal with an unbound key widens its own bound key: allowed,
	// announced, high.
	own, _ := f.principal(t, custos.KindOperator, "", "olga")
	opKeys, err := f.vault.Keys(f.ctx, custos.PrincipalFromContext(own).ID)
	if err != nil || len(opKeys) != 1 {
		t.Fatal(opKeys, err)
	}
	if _, err := f.vault.SetKeyNetworks(own, opKeys[0].ID, []string{"10.9.0.0/16"}); err != nil {
		t.Fatalf("an operator binding its own key: %v", err)
	}
	if _, err := f.vault.SetKeyNetworks(own, opKeys[0].ID, nil); err != nil {
		t.Fatalf("an operator widening its own key: %v", err)
	}
	var l audit.Leaf
	if err := json.Unmarshal([]byte(lastLeaf(t, f, custos.ActionKeyNetworks)), &l); err != nil {
		t.Fatal(err)
	}
	if l.Outcome != audit.OutcomeOK || l.Severity != "high" || !strings.Contains(l.Detail, "widened from 10.9.0.0/16 to any") {
		t.Fatalf("the widening is recorded as %+v; want a high entry naming the ranges", l)
	}
	if !told(t, f, vault.TopicKeyNetworks, "", notify.ToStaffSecurity, true) {
		t.Fatalf("security was not told of the widening: %v", outbox(t, f))
	}

	// Ranges changed behind custos's back: the key is no key.
	f.exec(t, `UPDATE api_keys SET networks = NULL WHERE id = $1`, k.ID)
	if _, err := f.from(secret, outside); err == nil {
		t.Fatal("a key unbound in the database works from outside")
	}
	if _, err := f.from(secret, inside); err == nil {
		t.Fatal("a key whose ranges were changed in the database still works")
	}
	f.integrityAlerted(t, "api_keys", k.ID)
}
