// Package kmstest is a KMS for tests of a tenant's own key (bring your
// own key): a real Tink KMS client ([registry.KMSClient]) registered with
// keys.RegisterKMSClient under a URI prefix of its own
// ("test-kms://<random>/"), whose keys are real Tink AES-256-GCM keysets.
// The test can revoke custos's access to it, as a tenant would in its KMS,
// and restore it.
package kmstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos/keys"
)

// Scheme is the URI scheme of test KMS keys.
const Scheme = "test-kms"

// KMS is one test KMS. Safe for concurrent use.
type KMS struct {
	prefix  string
	revoked atomic.Bool
	calls   atomic.Int64 // encrypt and decrypt calls, refused ones too

	mu   sync.Mutex
	keys map[string]tink.AEAD // URI → its key
}

var _ registry.KMSClient = (*KMS)(nil)

// New returns a test KMS registered with keys.RegisterKMSClient. Tink's
// registry cannot forget one client, so each KMS has a random prefix of
// its own and tests do not see each other's keys.
func New(t testing.TB) *KMS {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	k := &KMS{prefix: Scheme + "://" + hex.EncodeToString(b) + "/", keys: map[string]tink.AEAD{}}
	keys.RegisterKMSClient(k)
	return k
}

// URI returns the URI of the KMS's key name (made on first use).
func (k *KMS) URI(name string) string { return k.prefix + "keys/" + name }

// Revoke refuses every call from now on, as a tenant revoking custos's
// access to its key does; Restore lets them through again.
func (k *KMS) Revoke()  { k.revoked.Store(true) }
func (k *KMS) Restore() { k.revoked.Store(false) }

// Calls returns how many encrypt and decrypt calls reached the KMS.
func (k *KMS) Calls() int64 { return k.calls.Load() }

// Supported reports whether uri is one of this KMS's keys.
func (k *KMS) Supported(uri string) bool { return strings.HasPrefix(uri, k.prefix) }

// GetAEAD returns the key at uri, made on first use.
func (k *KMS) GetAEAD(uri string) (tink.AEAD, error) {
	if !k.Supported(uri) {
		return nil, errors.New("test-kms: not this KMS's key")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	a, ok := k.keys[uri]
	if !ok {
		h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
		if err != nil {
			return nil, err
		}
		if a, err = aead.New(h); err != nil {
			return nil, err
		}
		k.keys[uri] = a
	}
	return &remote{kms: k, aead: a}, nil
}

// remote is a key as a KMS client holds it: every call asks the KMS,
// which may refuse.
type remote struct {
	kms  *KMS
	aead tink.AEAD
}

var errDenied = errors.New("test-kms: access denied: the key's owner revoked this caller's access")

func (r *remote) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	r.kms.calls.Add(1)
	if r.kms.revoked.Load() {
		return nil, errDenied
	}
	return r.aead.Encrypt(plaintext, associatedData)
}

func (r *remote) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	r.kms.calls.Add(1)
	if r.kms.revoked.Load() {
		return nil, errDenied
	}
	return r.aead.Decrypt(ciphertext, associatedData)
}
