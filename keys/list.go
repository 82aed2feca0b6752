package keys

import (
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
)

// List keys. Each list created since migration 0014 has its own AEAD and
// PRF keysets, wrapped under its tenant's AEAD (not the KEK): deleting the
// list's wrapped keysets shreds its contacts' ciphertexts, blind indexes
// and row MACs, backups included, while the tenant lives on; deleting the
// tenant's keyset shreds every list's keysets with it. docs/keys.md.

// listMagic starts a wrapped list keyset pair (the tenant's is "CKS1").
var listMagic = []byte("CLK1")

// listAD binds a wrapped list keyset to its tenant, its list and its
// purpose ("aead" or "prf"): a blob copied to another list, another
// tenant or the other purpose does not unwrap.
func listAD(tenantID, listID, purpose string) []byte {
	return []byte("custos/tenant/" + tenantID + "/list/" + listID + "/" + purpose)
}

// maxCachedLists bounds the lists whose keys one tenant caches; past it,
// the cache is emptied and refilled on demand (one unwrap, no KEK call).
const maxCachedLists = 1024

// NewListKeys creates fresh keysets for a list of the tenant and returns
// them with their wrapped form, to be stored with the list. They are not
// cached: [TenantKeys.List] caches them once the list is read back.
func (t *TenantKeys) NewListKeys(listID string) (*DataKeys, []byte, error) {
	ah, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new list keys: %w", err)
	}
	ph, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new list keys: %w", err)
	}
	wrapped, err := wrapPair(listMagic, ah, ph, t.aead, func(purpose string) []byte { return listAD(t.id, listID, purpose) })
	if err != nil {
		return nil, nil, fmt.Errorf("wrap list keys: %w", err)
	}
	dk, err := newDataKeys(ah, ph)
	if err != nil {
		return nil, nil, fmt.Errorf("list keys: %w", err)
	}
	return dk, wrapped, nil
}

// List returns a list's keys, unwrapping wrapped (made by
// [TenantKeys.NewListKeys] for this tenant and list) unless cached.
func (t *TenantKeys) List(listID string, wrapped []byte) (*DataKeys, error) {
	if dk, ok := t.CachedList(listID); ok {
		return dk, nil
	}
	dk, err := unwrapPair(listMagic, wrapped, t.aead, func(purpose string) []byte { return listAD(t.id, listID, purpose) })
	if err != nil {
		return nil, fmt.Errorf("unwrap list keys: %w", err)
	}
	t.cacheList(listID, dk)
	return dk, nil
}

// LegacyList returns the keys of a list created before lists had keys of
// their own: the tenant's, cached as the list's so that the next request
// costs no query. Only a caller that has read the list's row and found no
// keyset in it may call it.
func (t *TenantKeys) LegacyList(listID string) *DataKeys {
	t.cacheList(listID, &t.DataKeys)
	return &t.DataKeys
}

// IsTenant reports whether dk are the tenant's own keys (a legacy list's).
func (t *TenantKeys) IsTenant(dk *DataKeys) bool { return dk == &t.DataKeys }

// CachedList returns a list's keys if [TenantKeys.List] or
// [TenantKeys.LegacyList] cached them.
func (t *TenantKeys) CachedList(listID string) (*DataKeys, bool) {
	t.mu.RLock()
	dk, ok := t.lists[listID]
	t.mu.RUnlock()
	return dk, ok
}

func (t *TenantKeys) cacheList(listID string, dk *DataKeys) {
	t.mu.Lock()
	if len(t.lists) >= maxCachedLists {
		clear(t.lists)
	}
	t.lists[listID] = dk
	t.mu.Unlock()
}

// ForgetList drops a list's keys from the cache (after its keyset was
// destroyed).
func (t *TenantKeys) ForgetList(listID string) {
	t.mu.Lock()
	delete(t.lists, listID)
	t.mu.Unlock()
}

// KEK kinds, as a deletion receipt states them ("kek" line): who holds the
// key-encryption key that wrapped the destroyed keys, and where.
const (
	// KEKVendorLocal is a key file on the vendor's machines (local://).
	KEKVendorLocal = "vendor-local"
	// KEKVendorKMS prefixes a KMS key the vendor holds: "vendor-kms:" and
	// the URI's scheme (hcvault, aws-kms, gcp-kms, …).
	KEKVendorKMS = "vendor-kms:"
	// KEKTenantKMS prefixes a KMS key the tenant owns (BYOK, issue 22):
	// the tenant's keys were wrapped under it around custos's KEK
	// ([DescribeTenantKMS]).
	KEKTenantKMS = "tenant-kms:"
)

// DescribeKEK returns the kind of the KEK named by uri for a receipt:
// [KEKVendorLocal] for a local:// file, [KEKVendorKMS] and the scheme for
// any KMS URI: custos's own KEK is always the vendor's (a tenant's own key
// is described by [DescribeTenantKMS]). It returns "" for a URI with no
// scheme.
func DescribeKEK(uri string) string {
	if strings.HasPrefix(uri, localScheme) {
		return KEKVendorLocal
	}
	scheme, _, ok := strings.Cut(uri, "://")
	if !ok || !ValidKEKScheme(scheme) {
		return ""
	}
	return KEKVendorKMS + scheme
}

// ValidKEKScheme reports whether s can name a KEK's URI scheme in a
// receipt: 1 to 32 lower-case letters, digits or '-', starting with a
// letter.
func ValidKEKScheme(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
