package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Bring your own key (issue 22, docs/keys.md "A tenant's own key"). A
// tenant may name a key in its own KMS; its keysets are then wrapped twice:
// first by custos's KEK, as every tenant's are, then by the tenant's KMS
// key. Opening them needs both: the vendor alone (KEK, database) cannot,
// and neither can whoever holds the tenant's KMS key alone. The tenant's
// KMS sees only KEK ciphertext, never a keyset. When the tenant revokes
// custos's access to its key, its keysets stop unwrapping: [ErrKeyUnavailable].

// ErrKeyUnavailable is returned when a tenant's own KMS key refuses, or
// cannot be reached, to open its keysets.
var ErrKeyUnavailable = errors.New("the tenant's KMS key is unavailable")

// layered is the AEAD a tenant's keysets are wrapped with under its own
// key: the KEK inside, the tenant's KMS key outside. It remembers whether
// the tenant's key failed, so that [Keyring.Unwrap] can tell a revoked key
// from a damaged blob (Tink's keyset reader keeps no error chain). One is
// made per unwrap: it is not shared between goroutines.
type layered struct {
	kek, tenant tink.AEAD
	tenantErr   bool
}

func (l *layered) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	inner, err := l.kek.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, err
	}
	out, err := l.tenant.Encrypt(inner, associatedData)
	if err != nil {
		l.tenantErr = true
		return nil, err
	}
	return out, nil
}

func (l *layered) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	inner, err := l.tenant.Decrypt(ciphertext, associatedData)
	if err != nil {
		l.tenantErr = true
		return nil, err
	}
	return l.kek.Decrypt(inner, associatedData)
}

// master returns the AEAD a tenant's keysets are wrapped with: the KEK
// alone (tenantKMS nil), or the KEK inside the tenant's KMS key.
func (k *Keyring) master(tenantKMS tink.AEAD) *layered {
	if tenantKMS == nil {
		return nil
	}
	return &layered{kek: k.kek, tenant: tenantKMS}
}

// Unwrap opens a tenant's wrapped keysets with the KEK alone (tenantKMS
// nil) or with the KEK inside the tenant's own KMS key, without caching:
// the caller decides how long to keep them (the vault keeps them for a
// bounded time, so that a revoked key takes effect). A failure of the
// tenant's key is [ErrKeyUnavailable].
func (k *Keyring) Unwrap(tenantID string, wrapped []byte, tenantKMS tink.AEAD) (*TenantKeys, error) {
	ah, ph, err := k.openTenant(tenantID, wrapped, tenantKMS)
	if err != nil {
		return nil, fmt.Errorf("unwrap tenant keys: %w", err)
	}
	dk, err := newDataKeys(ah, ph)
	if err != nil {
		return nil, fmt.Errorf("unwrap tenant keys: %w", err)
	}
	return newTenantKeys(tenantID, dk), nil
}

// openTenant unwraps a tenant's keyset handles with the KEK — inside the
// tenant's own KMS key when tenantKMS is not nil — and, during a KEK
// rotation, with the previous KEK when the current one does not open
// them (a keyset not re-wrapped yet). A failure of the tenant's key is
// [ErrKeyUnavailable]; a KEK that cannot be asked, [ErrKEKUnavailable].
func (k *Keyring) openTenant(tenantID string, wrapped []byte, tenantKMS tink.AEAD) (ah, ph *keyset.Handle, err error) {
	adf := func(purpose string) []byte { return ad(tenantID, purpose) }
	try := func(kek tink.AEAD) (*keyset.Handle, *keyset.Handle, bool, error) {
		var m tink.AEAD = kek
		var l *layered
		if tenantKMS != nil {
			l = &layered{kek: kek, tenant: tenantKMS}
			m = l
		}
		ah, ph, err := unwrapHandles(magic, wrapped, m, adf)
		return ah, ph, l != nil && l.tenantErr, err
	}
	ah, ph, tenantFailed, err := try(k.kek)
	if err != nil && !tenantFailed && k.prev != nil && !errors.Is(err, ErrKEKUnavailable) {
		if pa, pp, _, perr := try(k.prev); perr == nil {
			return pa, pp, nil
		}
	}
	if tenantFailed {
		return nil, nil, ErrKeyUnavailable
	}
	return ah, ph, err
}

// Rewrap re-encrypts a tenant's wrapped keysets from one master to
// another: from the KEK alone (from nil) or the KEK inside the tenant's
// key from, to the KEK alone (to nil) or inside the tenant's key to. The
// keysets themselves do not change, so nothing sealed under them does.
func (k *Keyring) Rewrap(tenantID string, wrapped []byte, from, to tink.AEAD) ([]byte, error) {
	adf := func(purpose string) []byte { return ad(tenantID, purpose) }
	var src tink.AEAD = k.kek
	lf := k.master(from)
	if lf != nil {
		src = lf
	}
	handles, err := readPair(magic, wrapped, src, adf)
	if err != nil {
		if lf != nil && lf.tenantErr {
			return nil, fmt.Errorf("rewrap tenant keys: %w", ErrKeyUnavailable)
		}
		return nil, fmt.Errorf("rewrap tenant keys: %w", err)
	}
	var dst tink.AEAD = k.kek
	lt := k.master(to)
	if lt != nil {
		dst = lt
	}
	out, err := wrapPair(magic, handles[0], handles[1], dst, adf)
	if err != nil {
		if lt != nil && lt.tenantErr {
			return nil, fmt.Errorf("rewrap tenant keys: %w", ErrKeyUnavailable)
		}
		return nil, fmt.Errorf("rewrap tenant keys: %w", err)
	}
	return out, nil
}

// readPair is unwrapPair returning the keyset handles, for a rewrap.
// (It repeats unwrapPair's parsing rather than changing it, so that the
// rotation work on keys.go merges cleanly; fold them together after.)
func readPair(magic, wrapped []byte, master tink.AEAD, ad func(purpose string) []byte) ([]*keyset.Handle, error) {
	if !bytes.HasPrefix(wrapped, magic) {
		return nil, errMalformed
	}
	rest := wrapped[len(magic):]
	var handles []*keyset.Handle
	for _, purpose := range []string{"aead", "prf"} {
		if len(rest) < 4 {
			return nil, errMalformed
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return nil, errMalformed
		}
		h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(rest[:n])), master, ad(purpose))
		if err != nil {
			return nil, fmt.Errorf("%s keyset does not open here", purpose)
		}
		handles = append(handles, h)
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return nil, errMalformed
	}
	return handles, nil
}

// MaxTenantKMSURI bounds a tenant's KMS key URI.
const MaxTenantKMSURI = 512

// CheckTenantKMSURI refuses a URI a tenant may not name as its own key: a
// local:// file (a path on the vendor's machines), one with user
// information, a query or a fragment (where secrets would hide), one that
// is not printable ASCII, or one longer than [MaxTenantKMSURI]. Its error
// never repeats the URI.
func CheckTenantKMSURI(uri string) error {
	scheme, rest, ok := strings.Cut(uri, "://")
	switch {
	case uri == "":
		return errors.New("a KMS key URI is required")
	case len(uri) > MaxTenantKMSURI:
		return fmt.Errorf("the KMS key URI is longer than %d bytes", MaxTenantKMSURI)
	case !ok || !ValidKEKScheme(scheme) || rest == "":
		return errors.New("the KMS key URI must be SCHEME://KEY (hcvault://, aws-kms://, gcp-kms://, …)")
	case scheme+"://" == localScheme:
		return errors.New("local:// names a file on custos's machines, not a tenant's own key: use a KMS URI")
	case strings.ContainsAny(rest, "?#@"):
		return errors.New("the KMS key URI must carry no credentials, query or fragment")
	}
	for i := 0; i < len(uri); i++ {
		if uri[i] <= 0x20 || uri[i] > 0x7e {
			return errors.New("the KMS key URI must be printable ASCII without spaces")
		}
	}
	return nil
}

// OpenTenantKMS returns the AEAD of a tenant's own KMS key, through the
// KMS clients registered with [RegisterKMSClient] (never a local:// file:
// [CheckTenantKMSURI]). Its error names the URI's scheme only.
func OpenTenantKMS(uri string) (tink.AEAD, error) {
	if err := CheckTenantKMSURI(uri); err != nil {
		return nil, err
	}
	scheme, _, _ := strings.Cut(uri, "://")
	c, err := registry.GetKMSClient(uri)
	if err != nil {
		return nil, fmt.Errorf("no KMS client of this custos serves this %s URI", scheme)
	}
	a, err := c.GetAEAD(uri)
	if err != nil {
		return nil, fmt.Errorf("the %s client cannot use this key", scheme)
	}
	return a, nil
}

// ProbeTenantKMS checks that a tenant's KMS key encrypts and decrypts for
// custos: a random value, bound to the tenant, must come back.
func ProbeTenantKMS(tenantID string, a tink.AEAD) error {
	probe := make([]byte, 32)
	rand.Read(probe)
	adata := []byte("custos/tenant/" + tenantID + "/kms-probe")
	ct, err := a.Encrypt(probe, adata)
	if err != nil {
		return fmt.Errorf("encrypt with the key: %w", ErrKeyUnavailable)
	}
	pt, err := a.Decrypt(ct, adata)
	if err != nil || !bytes.Equal(pt, probe) {
		return fmt.Errorf("decrypt with the key: %w", ErrKeyUnavailable)
	}
	return nil
}

// DescribeTenantKMS is [DescribeKEK] for a tenant's own key: [KEKTenantKMS]
// and the URI's scheme ("tenant-kms:aws-kms"), or "" for a bad URI.
func DescribeTenantKMS(uri string) string {
	scheme, _, ok := strings.Cut(uri, "://")
	if !ok || !ValidKEKScheme(scheme) {
		return ""
	}
	return KEKTenantKMS + scheme
}
