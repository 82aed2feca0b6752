package keys_test

import (
	"bytes"
	"testing"

	"github.com/custos-dev/custos/keys"
)

// TestListKeys: a list's keys are its own — a value sealed under them
// does not open with the tenant's keys nor another list's, the blind
// index differs from the tenant's — and their wrapped form unwraps only
// under its tenant's keys, for its own list.
func TestListKeys(t *testing.T) {
	ring := newRing(t)
	a, _, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := ring.NewTenantKeys("tn_b")
	if err != nil {
		t.Fatal(err)
	}
	l1, w1, err := a.NewListKeys("ls_1")
	if err != nil {
		t.Fatal(err)
	}
	l2, _, err := a.NewListKeys("ls_2")
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("tn_a/ct_x/email")
	ct, err := l1.Seal([]byte("jane@example.com"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := l1.Open(ct, ad); err != nil || string(pt) != "jane@example.com" {
		t.Fatalf("list keys open their own ciphertext: %q, %v", pt, err)
	}
	if _, err := a.Open(ct, ad); err == nil {
		t.Error("the tenant's keys opened a list's ciphertext")
	}
	if _, err := l2.Open(ct, ad); err == nil {
		t.Error("another list's keys opened the ciphertext")
	}
	if bytes.Equal(l1.BlindIndex("jane@example.com"), a.BlindIndex("jane@example.com")) ||
		bytes.Equal(l1.BlindIndex("jane@example.com"), l2.BlindIndex("jane@example.com")) {
		t.Error("a list's blind index equals its tenant's or another list's")
	}
	if !bytes.Equal(l1.BlindIndex("jane@example.com"), l1.BlindIndex("jane@example.com")) {
		t.Error("the blind index is not deterministic")
	}

	// Unwrapped from its stored form (NewListKeys does not cache).
	if _, ok := a.CachedList("ls_1"); ok {
		t.Fatal("NewListKeys cached the keys of a list that may never commit")
	}
	got, err := a.List("ls_1", w1)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := got.Open(ct, ad); err != nil || string(pt) != "jane@example.com" {
		t.Fatalf("unwrapped list keys: %q, %v", pt, err)
	}
	if c, ok := a.CachedList("ls_1"); !ok || c != got {
		t.Error("List did not cache the list's keys")
	}
	a.ForgetList("ls_1")
	if _, ok := a.CachedList("ls_1"); ok {
		t.Error("ForgetList left the keys in the cache")
	}
	// Bound to tenant and list: not as another list, not under another tenant.
	if _, err := a.List("ls_2", w1); err == nil {
		t.Error("a list's wrapped keys unwrapped as another list's")
	}
	if _, err := b.List("ls_1", w1); err == nil {
		t.Error("a list's wrapped keys unwrapped under another tenant")
	}
	// The tenant keyset's own format does not pass for a list's.
	_, wt, _ := ring.NewTenantKeys("tn_c")
	if _, err := a.List("ls_3", wt); err == nil {
		t.Error("a tenant's wrapped keyset unwrapped as a list's")
	}

	// A legacy list is sealed under the tenant's keys.
	if lk := a.LegacyList("ls_old"); !a.IsTenant(lk) || a.IsTenant(l1) {
		t.Error("LegacyList does not return the tenant's own keys")
	}
	if pt, err := a.LegacyList("ls_old").Open(mustSeal(t, &a.DataKeys, ad), ad); err != nil || string(pt) != "x" {
		t.Errorf("legacy list keys: %q, %v", pt, err)
	}
}

func mustSeal(t *testing.T, k *keys.DataKeys, ad []byte) []byte {
	t.Helper()
	ct, err := k.Seal([]byte("x"), ad)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// TestDescribeKEK: the KEK kind a receipt states, from the KEK's URI.
func TestDescribeKEK(t *testing.T) {
	for uri, want := range map[string]string{
		"local:///var/lib/custos/kek.json":                       keys.KEKVendorLocal,
		"hcvault://vault.internal:8200/transit/keys/custos":      "vendor-kms:hcvault",
		"aws-kms://arn:aws:kms:eu-west-1:1:key/x":                "vendor-kms:aws-kms",
		"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys": "vendor-kms:gcp-kms",
		"HCVAULT://x": "",
		"no-scheme":   "",
		"a b://x":     "",
		"://x":        "",
	} {
		if got := keys.DescribeKEK(uri); got != want {
			t.Errorf("DescribeKEK(%q) = %q, want %q", uri, got, want)
		}
	}
}

// FuzzListKeys: unwrapping a list's keys from any bytes never panics, and
// nothing but the genuine wrapped form unwraps.
func FuzzListKeys(f *testing.F) {
	ring := newRing(f)
	tk, _, err := ring.NewTenantKeys("tn_f")
	if err != nil {
		f.Fatal(err)
	}
	_, w, err := tk.NewListKeys("ls_f")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(w)
	f.Add([]byte("CLK1"))
	f.Add([]byte("CLK1\x00\x00\x00\x05abc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tk.ForgetList("ls_f")
		if _, err := tk.List("ls_f", b); err == nil && !bytes.Equal(b, w) {
			t.Fatalf("unwrapped %d bytes that are not the list's wrapped keys", len(b))
		}
	})
}

// BenchmarkCachedList is what a list's keys cost an audited read once
// cached: one read-locked map lookup (on top of the tenant's).
func BenchmarkCachedList(b *testing.B) {
	ring := newRing(b)
	tk, _, err := ring.NewTenantKeys("tn_b")
	if err != nil {
		b.Fatal(err)
	}
	_, w, err := tk.NewListKeys("ls_b")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tk.List("ls_b", w); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := tk.CachedList("ls_b"); !ok {
				b.Fatal("not cached")
			}
		}
	})
}
