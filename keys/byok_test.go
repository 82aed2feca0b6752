package keys_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/keys"
)

// TestTenantKMSLayers: a tenant's keysets rewrapped under its own key open
// only with both custos's KEK and the tenant's key; a revoked tenant key is
// ErrKeyUnavailable (not a damaged blob); another custos KEK does not open
// them even with the tenant's key; rewrapping back to the KEK alone gives
// the same keys.
func TestTenantKMSLayers(t *testing.T) {
	ring, other := newRing(t), newRing(t)
	kms := kmstest.New(t)
	tkms, err := keys.OpenTenantKMS(kms.URI("t1"))
	if err != nil {
		t.Fatal(err)
	}
	tk, wrapped, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := tk.Seal([]byte("x"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	byok, err := ring.Rewrap("tn_a", wrapped, nil, tkms)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Unwrap("tn_a", byok, nil); err == nil {
		t.Fatal("opened with the KEK alone")
	}
	if _, err := other.Unwrap("tn_a", byok, tkms); err == nil || errors.Is(err, keys.ErrKeyUnavailable) {
		t.Fatalf("another KEK with the tenant's key: %v, want a plain failure", err)
	}
	if _, err := ring.Unwrap("tn_b", byok, tkms); err == nil {
		t.Fatal("opened as another tenant's")
	}
	got, err := ring.Unwrap("tn_a", byok, tkms)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := got.Open(ct, []byte("ad")); err != nil || string(pt) != "x" {
		t.Fatalf("the same keys after the rewrap: %q, %v", pt, err)
	}
	kms.Revoke()
	if _, err := ring.Unwrap("tn_a", byok, tkms); !errors.Is(err, keys.ErrKeyUnavailable) {
		t.Fatalf("revoked: %v, want ErrKeyUnavailable", err)
	}
	if _, err := ring.Rewrap("tn_a", byok, tkms, nil); !errors.Is(err, keys.ErrKeyUnavailable) {
		t.Fatalf("rewrap off a revoked key: %v, want ErrKeyUnavailable", err)
	}
	if err := keys.ProbeTenantKMS("tn_a", tkms); !errors.Is(err, keys.ErrKeyUnavailable) {
		t.Fatalf("probe a revoked key: %v", err)
	}
	kms.Restore()
	back, err := ring.Rewrap("tn_a", byok, tkms, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ring.Unwrap("tn_a", back, nil); err != nil {
		t.Fatal(err)
	} else if pt, err := got.Open(ct, []byte("ad")); err != nil || string(pt) != "x" {
		t.Fatalf("the same keys back under the KEK: %v", err)
	}
}

func TestCheckTenantKMSURI(t *testing.T) {
	for uri, ok := range map[string]bool{
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd": true,
		"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k":  true,
		"hcvault://vault.example:8200/transit/keys/acme":            true,
		"":                                      false,
		"local:///etc/custos/kek.json":          false,
		"hcvault://user:pw@vault/transit/keys":  false,
		"hcvault://vault/transit/keys/a?x=1":    false,
		"hcvault://vault/transit/keys/a#f":      false,
		"HCVAULT://vault/k":                     false,
		"hcvault://":                            false,
		"hcvault://vault/k y":                   false,
		"hcvault://vault/kü":                    false,
		"aws-kms://" + strings.Repeat("a", 600): false,
	} {
		if err := keys.CheckTenantKMSURI(uri); (err == nil) != ok {
			t.Errorf("CheckTenantKMSURI(%q) = %v, want ok %v", uri, err, ok)
		}
	}
}

// FuzzCheckTenantKMSURI: a tenant admin's URI either passes — a lower-case
// scheme other than local, no credentials, query or fragment, printable
// ASCII, bounded — or is refused with a fixed message that never repeats it.
func FuzzCheckTenantKMSURI(f *testing.F) {
	for _, s := range []string{"aws-kms://arn:aws:kms:r:1:key/k", "local:///k", "hcvault://u@h/k", "x://y?z", "gcp-kms://projects/p"} {
		f.Add(s)
	}
	// Every refusal is one of these fixed messages: none carries the URI.
	refusals := map[string]bool{}
	for _, bad := range []string{"", strings.Repeat("a", keys.MaxTenantKMSURI+1), "x", "local://a", "a://b?c", "a://b c"} {
		refusals[keys.CheckTenantKMSURI(bad).Error()] = true
	}
	f.Fuzz(func(t *testing.T, uri string) {
		err := keys.CheckTenantKMSURI(uri)
		if err != nil {
			if !refusals[err.Error()] {
				t.Fatalf("refusal %q is not one of the fixed messages", err)
			}
			return
		}
		scheme, rest, ok := strings.Cut(uri, "://")
		if !ok || !keys.ValidKEKScheme(scheme) || scheme == "local" || rest == "" || len(uri) > keys.MaxTenantKMSURI || strings.ContainsAny(uri, "?#@ \n") {
			t.Fatalf("accepted %q", uri)
		}
		if keys.DescribeTenantKMS(uri) != keys.KEKTenantKMS+scheme {
			t.Fatalf("DescribeTenantKMS(%q) = %q", uri, keys.DescribeTenantKMS(uri))
		}
	})
}
