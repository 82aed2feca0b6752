package keys_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/testing/fakekms"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos/keys"
)

func newRing(t testing.TB) *keys.Keyring {
	t.Helper()
	uri, err := keys.CreateLocalKEK(filepath.Join(t.TempDir(), "kek.json"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keys.OpenKEK(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	return keys.NewKeyring(kek)
}

func TestLocalKEK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	uri, err := keys.CreateLocalKEK(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("KEK file mode %o, want 600", st.Mode().Perm())
	}
	if _, err := keys.CreateLocalKEK(path); err == nil {
		t.Error("CreateLocalKEK overwrote an existing KEK")
	}
	os.Chmod(path, 0o644)
	if _, err := keys.OpenKEK(context.Background(), uri); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("OpenKEK of a 0644 file: %v; want a refusal", err)
	}
	if _, err := keys.OpenKEK(context.Background(), "azure-kv://vault.example/keys/x"); err == nil || !strings.Contains(err.Error(), "no KMS client for") {
		t.Errorf("OpenKEK of an unregistered scheme: %v", err)
	}
}

func TestTenantKeys(t *testing.T) {
	ring := newRing(t)
	a, wrappedA, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	_, wrappedB, err := ring.NewTenantKeys("tn_b")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := a.Seal([]byte("jane@example.com"), []byte("ad1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("jane")) {
		t.Fatal("ciphertext contains plaintext")
	}
	if _, err := a.Open(ct, []byte("ad2")); err == nil {
		t.Fatal("opened with the wrong associated data")
	}
	a2, err := ring.Tenant("tn_a", wrappedA) // from the cache
	if err != nil {
		t.Fatal(err)
	}
	ring.Forget("tn_a")
	a2, err = ring.Tenant("tn_a", wrappedA) // unwrapped from the blob
	if err != nil {
		t.Fatal(err)
	}
	pt, err := a2.Open(ct, []byte("ad1"))
	if err != nil || string(pt) != "jane@example.com" {
		t.Fatalf("round trip: %q, %v", pt, err)
	}
	ring.Forget("tn_a")
	if _, err := ring.Tenant("tn_a", wrappedB); err == nil {
		t.Fatal("tenant B's keys unwrapped as tenant A's")
	}
	if _, err := ring.Tenant("tn_a", wrappedA[:len(wrappedA)-3]); err == nil {
		t.Fatal("truncated blob unwrapped")
	}
	b, err := ring.Tenant("tn_b", wrappedB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.BlindIndex("x@y.test"), a2.BlindIndex("x@y.test")) || len(a.BlindIndex("x@y.test")) != 32 {
		t.Fatal("blind index not deterministic within a tenant")
	}
	if bytes.Equal(a.BlindIndex("x@y.test"), b.BlindIndex("x@y.test")) {
		t.Fatal("blind index equal across tenants")
	}
}

func TestConcurrentUse(t *testing.T) {
	ring := newRing(t)
	_, wrapped, _ := ring.NewTenantKeys("tn_c")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := ring.Tenant("tn_c", wrapped)
			if err != nil {
				t.Error(err)
				return
			}
			for j := 0; j < 100; j++ {
				ct, _ := k.Seal([]byte("a@b.test"), nil)
				if pt, err := k.Open(ct, nil); err != nil || string(pt) != "a@b.test" {
					t.Error("concurrent round trip failed")
				}
				k.BlindIndex("a@b.test")
			}
		}()
	}
	wg.Wait()
}

func BenchmarkSeal(b *testing.B) {
	k, _, _ := newRing(b).NewTenantKeys("tn_x")
	pt, ad := []byte("first.last123@example-mail.com"), []byte("tn_x/ct_y/email")
	for b.Loop() {
		k.Seal(pt, ad)
	}
}

func BenchmarkOpen(b *testing.B) {
	k, _, _ := newRing(b).NewTenantKeys("tn_x")
	ad := []byte("tn_x/ct_y/email")
	ct, _ := k.Seal([]byte("first.last123@example-mail.com"), ad)
	for b.Loop() {
		k.Open(ct, ad)
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	k, _, _ := newRing(b).NewTenantKeys("tn_x")
	for b.Loop() {
		k.BlindIndex("first.last123@example-mail.com")
	}
}

// TestKMSSeam: a KEK behind any Tink KMS client — here Tink's fake KMS,
// standing in for Vault transit, AWS KMS or GCP KMS — plugs in through
// RegisterKMSClient and a URI, with no other change. Keysets wrapped by
// one KMS key do not unwrap under another.
func TestKMSSeam(t *testing.T) {
	client, err := fakekms.NewClient("fake-kms://")
	if err != nil {
		t.Fatal(err)
	}
	keys.RegisterKMSClient(client)
	open := func() *keys.Keyring {
		uri, err := fakekms.NewKeyURI()
		if err != nil {
			t.Fatal(err)
		}
		kek, err := keys.OpenKEK(context.Background(), uri)
		if err != nil {
			t.Fatalf("OpenKEK(fake-kms://…): %v", err)
		}
		return keys.NewKeyring(kek)
	}
	ring, other := open(), open()
	tk, wrapped, err := ring.NewTenantKeys("tn_kms")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := tk.Seal([]byte("jane@example.com"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	ring.Forget("tn_kms")
	again, err := ring.Tenant("tn_kms", wrapped)
	if err != nil {
		t.Fatalf("unwrap through the KMS: %v", err)
	}
	if pt, err := again.Open(ct, []byte("ad")); err != nil || string(pt) != "jane@example.com" {
		t.Fatalf("Open after KMS unwrap = %q, %v", pt, err)
	}
	if _, err := other.Tenant("tn_kms", wrapped); err == nil {
		t.Fatal("keysets wrapped by one KMS key unwrapped under another")
	}
}

// TestSystemAEAD: a system AEAD keyset seals and opens through its
// wrapped form, binds the associated data, and does not unwrap under
// another name, nor as the system PRF of the same name.
func TestSystemAEAD(t *testing.T) {
	ring := newRing(t)
	s, wrapped, err := ring.NewSystemAEAD("notes")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := s.Seal([]byte("jo@example.test was here"), []byte("alert/al_1/note"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("example.test")) {
		t.Fatal("ciphertext holds the plaintext")
	}
	s2, err := ring.SystemAEAD("notes", wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s2.Open(ct, []byte("alert/al_1/note")); err != nil || string(pt) != "jo@example.test was here" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := s2.Open(ct, []byte("alert/al_2/note")); err == nil {
		t.Error("opened under other associated data")
	}
	if _, err := ring.SystemAEAD("other", wrapped); err == nil {
		t.Error("unwrapped under another name")
	}
	if _, err := ring.SystemPRF("notes", wrapped); err == nil {
		t.Error("an AEAD keyset unwrapped as the PRF of the same name")
	}
}

// TestRotatingKeyring: during a KEK rotation the keyring unwraps what the
// old KEK wrapped, wraps anew under the new one only, and re-wraps
// tenant and system keysets so that the new KEK alone opens them.
func TestRotatingKeyring(t *testing.T) {
	ctx := context.Background()
	open := func() tink.AEAD {
		uri, err := keys.CreateLocalKEK(filepath.Join(t.TempDir(), "kek.json"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := keys.OpenKEK(ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	oldKEK, newKEK := open(), open()
	old := keys.NewKeyring(oldKEK)
	tk, wrapped, _ := old.NewTenantKeys("tn_a")
	_, sysPRF, _ := old.NewSystemPRF("rows")
	_, sysAEAD, _ := old.NewSystemAEAD("notes")
	ct, _ := tk.Seal([]byte("x"), nil)

	rot := keys.NewRotatingKeyring(newKEK, oldKEK)
	if _, err := rot.Tenant("tn_a", wrapped); err != nil {
		t.Fatalf("rotating keyring, old blob: %v", err)
	}
	_, fresh, _ := rot.NewTenantKeys("tn_b")
	if _, err := keys.NewKeyring(oldKEK).Tenant("tn_b", fresh); err == nil {
		t.Fatal("a keyset made during the rotation is wrapped under the old KEK")
	}
	rw, err := rot.RewrapTenant("tn_a", wrapped, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rot.RewrapTenant("tn_b", wrapped, nil); err == nil {
		t.Fatal("re-wrapped tenant A's keys as tenant B's")
	}
	rp, err := rot.RewrapSystem("rows", sysPRF)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := rot.RewrapSystem("notes", sysAEAD)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew := keys.NewKeyring(newKEK)
	tk2, err := onlyNew.Tenant("tn_a", rw)
	if err != nil {
		t.Fatalf("new KEK alone, re-wrapped blob: %v", err)
	}
	if pt, err := tk2.Open(ct, nil); err != nil || string(pt) != "x" {
		t.Fatal("re-wrapped keys are not the same keys")
	}
	if _, err := onlyNew.SystemPRF("rows", rp); err != nil {
		t.Fatal(err)
	}
	if _, err := onlyNew.SystemAEAD("notes", ra); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.NewKeyring(oldKEK).Tenant("tn_a", rw); err == nil {
		t.Fatal("the old KEK opens a re-wrapped keyset")
	}
	if _, err := onlyNew.Tenant("tn_c", wrapped); err == nil {
		t.Fatal("the new KEK alone opens a keyset not re-wrapped")
	}
}
