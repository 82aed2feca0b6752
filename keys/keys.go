// Package keys is custos's envelope encryption, built on Tink.
//
// Each tenant has two Tink keysets: AES-256-GCM ([DataKeys.Seal],
// [DataKeys.Open]) for values, and HMAC-SHA256 PRF ([DataKeys.BlindIndex])
// for the blind index. Both are stored only wrapped — encrypted by a
// key-encryption key (KEK) that lives outside the database — with the
// tenant id as associated data, so a wrapped blob moved to another tenant
// does not unwrap. Each list has two keysets of the same kinds for its
// contacts, wrapped under its tenant's AEAD with the tenant and list ids
// as associated data ([TenantKeys.NewListKeys], [TenantKeys.List]; lists
// older than these keep their tenant's, [TenantKeys.LegacyList]).
// Deleting a list's wrapped keysets destroys its contacts everywhere,
// backups included (crypto-shredding); deleting a tenant's destroys the
// tenant's data and every list's keys with it.
//
// The KEK is named by a URI. "local:///abs/path" is a Tink keyset file
// made by [CreateLocalKEK] (mode 0600): the default for one machine.
// HashiCorp Vault or OpenBao transit ("hcvault://"), AWS KMS
// ("aws-kms://") and GCP Cloud KMS ("gcp-kms://") are built in, their
// credentials taken from each environment's usual places; a KMS error
// names the URI and wraps [ErrKEKUnavailable] when the data it guards
// cannot be read. Any other scheme is resolved through Tink's KMS client
// registry ([RegisterKMSClient]); see docs/keys.md.
package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"
)

const localScheme = "local://"

// CreateLocalKEK writes a new AES-256-GCM keyset to path (mode 0600,
// refusing to overwrite) and returns its URI.
func CreateLocalKEK(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("create KEK: %w", err)
	}
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return "", fmt.Errorf("create KEK: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return "", fmt.Errorf("create KEK: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create KEK: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return "", fmt.Errorf("create KEK: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("create KEK: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("create KEK: %w", err)
	}
	return localScheme + abs, nil
}

// RegisterKMSClient makes a Tink KMS client (Vault transit, AWS KMS, GCP
// KMS, …) available to [OpenKEK]. Call it at startup, before OpenKEK.
func RegisterKMSClient(c registry.KMSClient) { registry.RegisterKMSClient(c) }

// OpenKEK returns the key-encryption key named by uri.
func OpenKEK(ctx context.Context, uri string) (tink.AEAD, error) {
	if path, ok := strings.CutPrefix(uri, localScheme); ok {
		return openLocal(path)
	}
	c, err := registry.GetKMSClient(uri)
	if err != nil {
		if a, ok, err := builtinKMS(ctx, uri); ok {
			return a, err
		}
		scheme, _, _ := strings.Cut(uri, "://")
		return nil, fmt.Errorf("open KEK: no KMS client for %q URIs (use local:///path, hcvault://, aws-kms:// or gcp-kms://, or register a Tink KMS client: see docs/keys.md)", scheme)
	}
	a, err := c.GetAEAD(uri)
	if err != nil {
		return nil, fmt.Errorf("open KEK: %w", err)
	}
	return a, nil
}

func openLocal(path string) (tink.AEAD, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open KEK: local:// URIs need an absolute path")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open KEK: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("open KEK: %s is readable by group or others (mode %o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open KEK: %w", err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(b)))
	if err != nil {
		return nil, fmt.Errorf("open KEK: %s is not a Tink keyset: %w", path, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("open KEK: %w", err)
	}
	return a, nil
}

// Keyring unwraps tenants' keysets with the KEK and caches them. During
// a KEK rotation it also holds the previous KEK, which unwraps what is not
// re-wrapped yet; everything it wraps is wrapped under the current one.
type Keyring struct {
	kek, prev tink.AEAD

	mu     sync.Mutex
	cache  map[string]*TenantKeys
	system map[string]*SystemAEAD // name + wrapped form → unwrapped
}

// maxCached bounds the cache; past it, the cache is emptied and refilled
// on demand (unwrapping costs one KEK call).
const maxCached = 4096

// NewKeyring returns a keyring wrapping with kek.
func NewKeyring(kek tink.AEAD) *Keyring {
	return &Keyring{kek: kek, cache: map[string]*TenantKeys{}}
}

// NewRotatingKeyring returns a keyring wrapping with kek that unwraps
// with kek and, for what kek does not open, with previous: the keyring of
// a KEK rotation ([Keyring.RewrapTenant], docs/keys.md). previous is
// asked only when kek answered and refused the keyset, never when kek's
// KMS is unavailable.
func NewRotatingKeyring(kek, previous tink.AEAD) *Keyring {
	return &Keyring{kek: kek, prev: previous, cache: map[string]*TenantKeys{}}
}

// KEKTag is the digest by which the database records which KEK wraps a
// keyset: the first 16 hex digits of SHA-256 over the URI. It names no
// host, account or path.
func KEKTag(uri string) string {
	h := sha256.Sum256([]byte(uri))
	return hex.EncodeToString(h[:8])
}

// unwrapKEK runs open with the KEK and, if it refused (not failed to
// answer), with the previous KEK.
func unwrapKEK[T any](k *Keyring, open func(master tink.AEAD) (T, error)) (T, error) {
	v, err := open(k.kek)
	if err != nil && k.prev != nil && !errors.Is(err, ErrKEKUnavailable) {
		if pv, perr := open(k.prev); perr == nil {
			return pv, nil
		}
	}
	return v, err
}

// RewrapTenant re-wraps a tenant's keysets under the current KEK: the
// same keys, so nothing sealed with them changes. wrapped may be under the
// current or the previous KEK; a tenant on its own KMS key (tenantKMS not
// nil) keeps that layer outside the new KEK.
func (k *Keyring) RewrapTenant(tenantID string, wrapped []byte, tenantKMS tink.AEAD) ([]byte, error) {
	adf := func(purpose string) []byte { return ad(tenantID, purpose) }
	ah, ph, err := k.openTenant(tenantID, wrapped, tenantKMS)
	if err != nil {
		return nil, fmt.Errorf("rewrap tenant keys: %w", err)
	}
	var dst tink.AEAD = k.kek
	if tenantKMS != nil {
		dst = &layered{kek: k.kek, tenant: tenantKMS}
	}
	out, err := wrapPair(magic, ah, ph, dst, adf)
	if err != nil {
		return nil, fmt.Errorf("rewrap tenant keys: %w", err)
	}
	return out, nil
}

// RewrapSystem re-wraps a system keyset (PRF or AEAD) under the current
// KEK.
func (k *Keyring) RewrapSystem(name string, wrapped []byte) ([]byte, error) {
	for _, sad := range [][]byte{systemAD(name), systemAEADAD(name)} {
		h, err := unwrapKEK(k, func(m tink.AEAD) (*keyset.Handle, error) { return readWrapped(wrapped, m, sad) })
		if errors.Is(err, ErrKEKUnavailable) {
			return nil, fmt.Errorf("rewrap system key %s: %w", name, err)
		}
		if err != nil {
			continue
		}
		var buf bytes.Buffer
		if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), k.kek, sad); err != nil {
			return nil, fmt.Errorf("rewrap system key %s: %w", name, err)
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("rewrap system key %s: the keyset does not open", name)
}

// DataKeys seal and index contacts: an AEAD for their values and a PRF
// for their blind index and row MACs. A list's own keys are DataKeys
// ([TenantKeys.List]); so are a tenant's, which a legacy list (created
// before lists had keys) and the tenant's own values use. Safe for
// concurrent use.
type DataKeys struct {
	aead tink.AEAD
	prf  *prf.Set
	old  []prf.PRF // the PRF keys other than the primary, while a rotation re-indexes (rotate.go)
	info []KeysetInfo
}

// TenantKeys are one tenant's unwrapped primitives, and a bounded cache of
// its lists' keys, which they wrap. Safe for concurrent use.
type TenantKeys struct {
	DataKeys
	id string

	mu    sync.RWMutex
	lists map[string]*DataKeys // list id → its keys (the tenant's own for a legacy list)
}

// Wrapped blob format, version 1:
//
//	"CKS1" | uint32 len | AEAD keyset, encrypted | uint32 len | PRF keyset, encrypted
//
// Each keyset is Tink's EncryptedKeyset (binary), encrypted under the KEK
// with associated data "custos/tenant/<id>/<purpose>".
var magic = []byte("CKS1")

func ad(tenantID, purpose string) []byte {
	return []byte("custos/tenant/" + tenantID + "/" + purpose)
}

// NewTenantKeys creates fresh keysets for a tenant and returns them with
// their wrapped form, to be stored.
func (k *Keyring) NewTenantKeys(tenantID string) (*TenantKeys, []byte, error) {
	ah, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new tenant keys: %w", err)
	}
	ph, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new tenant keys: %w", err)
	}
	wrapped, err := wrapPair(magic, ah, ph, k.kek, func(purpose string) []byte { return ad(tenantID, purpose) })
	if err != nil {
		return nil, nil, fmt.Errorf("wrap tenant keys: %w", err)
	}
	dk, err := newDataKeys(ah, ph)
	if err != nil {
		return nil, nil, fmt.Errorf("tenant keys: %w", err)
	}
	return newTenantKeys(tenantID, dk), wrapped, nil
}

func newTenantKeys(id string, dk *DataKeys) *TenantKeys {
	return &TenantKeys{DataKeys: *dk, id: id, lists: map[string]*DataKeys{}}
}

func newDataKeys(ah, ph *keyset.Handle) (*DataKeys, error) {
	a, err := aead.New(ah)
	if err != nil {
		return nil, fmt.Errorf("AEAD: %w", err)
	}
	p, err := prf.NewPRFSet(ph)
	if err != nil {
		return nil, fmt.Errorf("PRF: %w", err)
	}
	return &DataKeys{aead: a, prf: p, old: retiring(p), info: []KeysetInfo{infoOf("aead", ah), infoOf("prf", ph)}}, nil
}

// wrapPair encrypts an AEAD and a PRF keyset under master, each with the
// associated data ad gives its purpose, into one blob:
//
//	magic | uint32 len | AEAD keyset, encrypted | uint32 len | PRF keyset, encrypted
func wrapPair(magic []byte, ah, ph *keyset.Handle, master tink.AEAD, ad func(purpose string) []byte) ([]byte, error) {
	var out bytes.Buffer
	out.Write(magic)
	for _, part := range []struct {
		h       *keyset.Handle
		purpose string
	}{{ah, "aead"}, {ph, "prf"}} {
		var buf bytes.Buffer
		if err := part.h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), master, ad(part.purpose)); err != nil {
			return nil, err
		}
		binary.Write(&out, binary.BigEndian, uint32(buf.Len()))
		out.Write(buf.Bytes())
	}
	return out.Bytes(), nil
}

var errMalformed = errors.New("malformed wrapped keyset")

// unwrapPair is wrapPair's inverse. Its errors name the keyset's purpose,
// never its content.
func unwrapPair(magic, wrapped []byte, master tink.AEAD, ad func(purpose string) []byte) (*DataKeys, error) {
	ah, ph, err := unwrapHandles(magic, wrapped, master, ad)
	if err != nil {
		return nil, err
	}
	return newDataKeys(ah, ph)
}

// unwrapHandles is [unwrapPair] returning the keyset handles.
func unwrapHandles(magic, wrapped []byte, master tink.AEAD, ad func(purpose string) []byte) (*keyset.Handle, *keyset.Handle, error) {
	if !bytes.HasPrefix(wrapped, magic) {
		return nil, nil, errMalformed
	}
	rest := wrapped[len(magic):]
	var handles []*keyset.Handle
	for _, purpose := range []string{"aead", "prf"} {
		if len(rest) < 4 {
			return nil, nil, errMalformed
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return nil, nil, errMalformed
		}
		h, err := readWrapped(rest[:n], master, ad(purpose))
		if errors.Is(err, ErrKEKUnavailable) {
			return nil, nil, fmt.Errorf("%s keyset: %w", purpose, err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s keyset does not open here", purpose)
		}
		handles = append(handles, h)
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return nil, nil, errMalformed
	}
	return handles[0], handles[1], nil
}

// kekCapture keeps the KEK's own error, which Tink's keyset reader
// flattens into a string, so that a KMS that is down or refuses custos
// is reported as such and not as a keyset that does not open.
type kekCapture struct {
	tink.AEAD
	err error
}

func (c *kekCapture) Decrypt(ct, ad []byte) ([]byte, error) {
	pt, err := c.AEAD.Decrypt(ct, ad)
	if err != nil {
		c.err = err
	}
	return pt, err
}

// readWrapped reads a keyset encrypted under master with associated data
// ad. Its error wraps [ErrKEKUnavailable] when master could not be asked.
func readWrapped(b []byte, master tink.AEAD, ad []byte) (*keyset.Handle, error) {
	c := &kekCapture{AEAD: master}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(b)), c, ad)
	if err != nil && errors.Is(c.err, ErrKEKUnavailable) {
		return nil, c.err
	}
	return h, err
}

// Tenant returns a tenant's keys, unwrapping wrapped unless cached.
func (k *Keyring) Tenant(tenantID string, wrapped []byte) (*TenantKeys, error) {
	k.mu.Lock()
	tk, ok := k.cache[tenantID]
	k.mu.Unlock()
	if ok {
		return tk, nil
	}
	dk, err := unwrapKEK(k, func(m tink.AEAD) (*DataKeys, error) {
		return unwrapPair(magic, wrapped, m, func(purpose string) []byte { return ad(tenantID, purpose) })
	})
	if err != nil {
		return nil, fmt.Errorf("unwrap tenant keys: %w", err)
	}
	tk = newTenantKeys(tenantID, dk)
	k.mu.Lock()
	if len(k.cache) >= maxCached {
		clear(k.cache)
	}
	k.cache[tenantID] = tk
	k.mu.Unlock()
	return tk, nil
}

// Forget drops a tenant's keys from the cache (after crypto-shredding).
func (k *Keyring) Forget(tenantID string) {
	k.mu.Lock()
	delete(k.cache, tenantID)
	k.mu.Unlock()
}

// Seal encrypts plaintext bound to associatedData.
func (t *DataKeys) Seal(plaintext, associatedData []byte) ([]byte, error) {
	return t.aead.Encrypt(plaintext, associatedData)
}

// Open decrypts a ciphertext made by Seal with the same associated data.
// Its error says nothing about the content.
func (t *DataKeys) Open(ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := t.aead.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, errors.New("decrypt: authentication failed")
	}
	return pt, nil
}

// BlindIndex returns the 32-byte keyed PRF of a normalised address:
// equal under the same keys for equal input, unrelated across lists with
// keys of their own and across tenants.
func (t *DataKeys) BlindIndex(normalized string) []byte {
	out, err := t.prf.ComputePrimaryPRF([]byte(normalized), 32)
	if err != nil {
		// HMAC-SHA256 with a 32-byte output cannot fail; a failure here
		// means the keyset is corrupt, and no index is better than a wrong one.
		panic("keys: blind index: " + err.Error())
	}
	return out
}

// SystemPRF is a keyed PRF of the service itself, not of a tenant: the
// canary index tags contact tokens with it, so that a database reader
// cannot tell canaries from real contacts.
type SystemPRF struct {
	prf  *prf.Set
	info KeysetInfo
}

func systemAD(name string) []byte { return []byte("custos/system/" + name) }

// NewSystemPRF creates a fresh system PRF keyset named name and returns it
// with its KEK-wrapped form, to be stored.
func (k *Keyring) NewSystemPRF(name string) (*SystemPRF, []byte, error) {
	h, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new system PRF: %w", err)
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), k.kek, systemAD(name)); err != nil {
		return nil, nil, fmt.Errorf("wrap system PRF: %w", err)
	}
	p, err := prf.NewPRFSet(h)
	if err != nil {
		return nil, nil, err
	}
	return &SystemPRF{prf: p, info: infoOf("", h)}, buf.Bytes(), nil
}

// SystemPRF unwraps a system PRF keyset made by NewSystemPRF.
func (k *Keyring) SystemPRF(name string, wrapped []byte) (*SystemPRF, error) {
	h, err := unwrapKEK(k, func(m tink.AEAD) (*keyset.Handle, error) { return readWrapped(wrapped, m, systemAD(name)) })
	if errors.Is(err, ErrKEKUnavailable) {
		return nil, fmt.Errorf("unwrap system PRF %s: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap system PRF %s: the keyset does not open", name)
	}
	p, err := prf.NewPRFSet(h)
	if err != nil {
		return nil, err
	}
	return &SystemPRF{prf: p, info: infoOf("", h)}, nil
}

// Tag returns the 32-byte PRF of s.
func (s *SystemPRF) Tag(v string) []byte {
	out, err := s.prf.ComputePrimaryPRF([]byte(v), 32)
	if err != nil {
		panic("custos: system PRF failed: " + err.Error()) // HMAC-SHA256 with 32 bytes of output cannot fail
	}
	return out
}

// SystemAEAD is an AEAD keyset of the service itself, for values that
// belong to no tenant but must not sit in the database in clear: notes
// security staff write on alerts, reasons they give for containing a
// principal. Safe for concurrent use.
type SystemAEAD struct {
	aead tink.AEAD
	info KeysetInfo
}

// systemAEADAD keeps a wrapped AEAD keyset from being unwrapped as the
// PRF keyset of the same name, and the other way round.
func systemAEADAD(name string) []byte { return systemAD("aead/" + name) }

// NewSystemAEAD creates a fresh system AES-256-GCM keyset named name and
// returns it with its KEK-wrapped form, to be stored.
func (k *Keyring) NewSystemAEAD(name string) (*SystemAEAD, []byte, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new system AEAD: %w", err)
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), k.kek, systemAEADAD(name)); err != nil {
		return nil, nil, fmt.Errorf("wrap system AEAD: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, nil, fmt.Errorf("system AEAD: %w", err)
	}
	return &SystemAEAD{aead: a, info: infoOf("", h)}, buf.Bytes(), nil
}

// SystemAEAD unwraps a system AEAD keyset made by NewSystemAEAD. The
// unwrapped keyset is cached by name and wrapped form: the KEK (a KMS
// call in production) is asked once per process.
func (k *Keyring) SystemAEAD(name string, wrapped []byte) (*SystemAEAD, error) {
	ck := name + "\x00" + string(wrapped)
	k.mu.Lock()
	s, ok := k.system[ck]
	k.mu.Unlock()
	if ok {
		return s, nil
	}
	h, err := unwrapKEK(k, func(m tink.AEAD) (*keyset.Handle, error) { return readWrapped(wrapped, m, systemAEADAD(name)) })
	if errors.Is(err, ErrKEKUnavailable) {
		return nil, fmt.Errorf("unwrap system AEAD %s: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap system AEAD %s: the keyset does not open", name)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("system AEAD: %w", err)
	}
	s = &SystemAEAD{aead: a, info: infoOf("", h)}
	k.mu.Lock()
	if k.system == nil || len(k.system) >= 16 {
		k.system = map[string]*SystemAEAD{}
	}
	k.system[ck] = s
	k.mu.Unlock()
	return s, nil
}

// Seal encrypts plaintext bound to associatedData.
func (s *SystemAEAD) Seal(plaintext, associatedData []byte) ([]byte, error) {
	return s.aead.Encrypt(plaintext, associatedData)
}

// Open decrypts a ciphertext made by Seal with the same associated data.
// Its error says nothing about the content.
func (s *SystemAEAD) Open(ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := s.aead.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, errors.New("decrypt: authentication failed")
	}
	return pt, nil
}
