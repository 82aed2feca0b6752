package keys

import (
	"fmt"
	"slices"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Rotation of data keys (issue 22; docs/keys.md, "Rotating a tenant's data
// keys"). A Tink keyset holds several keys and one primary: rotating adds
// a fresh key to both keysets of a tenant (or a list) and makes it the
// primary, with keyset.Manager. New ciphertexts, blind indexes and row
// MACs use the new primary; ciphertexts under the old AEAD key still open
// (Tink picks the key by the ciphertext's prefix). The old PRF key stays
// too, while the rows are re-indexed under the new one: lookups compute
// both indexes ([DataKeys.BlindIndexes]) and row MACs check under either
// ([DataKeys.OldRowMACs]). Once every row is re-indexed, [Keyring.RetireTenantIndex]
// and [TenantKeys.RetireListIndex] delete the old PRF keys. The old AEAD
// keys are kept: values sealed under a tenant's keys outside contacts
// (reveal reasons, notes) are not re-encrypted.

// RotateTenant returns the tenant's wrapped keysets (as stored, made by
// [Keyring.NewTenantKeys]) with a new primary key in each, wrapped under
// the KEK — inside the tenant's own KMS key when tenantKMS is not nil
// (bring your own key: the layering stays as it was). The caller stores it
// and drops the cached keys ([Keyring.Forget]).
func (k *Keyring) RotateTenant(tenantID string, wrapped []byte, tenantKMS tink.AEAD) ([]byte, error) {
	return k.rekeyTenant(tenantID, wrapped, tenantKMS, "rotate tenant keys", addPrimary)
}

// RetireTenantIndex returns the tenant's wrapped keysets without the PRF
// keys other than the primary: after a rotation's re-index, the old blind
// index and row MAC key is destroyed. tenantKMS is as for
// [Keyring.RotateTenant].
func (k *Keyring) RetireTenantIndex(tenantID string, wrapped []byte, tenantKMS tink.AEAD) ([]byte, error) {
	return k.rekeyTenant(tenantID, wrapped, tenantKMS, "retire tenant index key", dropOldPRF)
}

// rekeyTenant changes a tenant's keysets with op, unwrapping and wrapping
// them with the KEK, inside the tenant's own key when it has one; a
// failure of the tenant's key is [ErrKeyUnavailable].
func (k *Keyring) rekeyTenant(tenantID string, wrapped []byte, tenantKMS tink.AEAD, what string, op func(string, *keyset.Handle) (*keyset.Handle, error)) ([]byte, error) {
	var m tink.AEAD = k.kek
	l := k.master(tenantKMS)
	if l != nil {
		m = l
	}
	out, err := rekey(magic, wrapped, m, func(purpose string) []byte { return ad(tenantID, purpose) }, op)
	if err != nil {
		if l != nil && l.tenantErr {
			return nil, fmt.Errorf("%s: %w", what, ErrKeyUnavailable)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// RotateList is [Keyring.RotateTenant] for one of the tenant's lists
// (wrapped made by [TenantKeys.NewListKeys]); the result is wrapped under
// the tenant's current primary.
func (t *TenantKeys) RotateList(listID string, wrapped []byte) ([]byte, error) {
	out, err := rekey(listMagic, wrapped, t.aead, func(purpose string) []byte { return listAD(t.id, listID, purpose) }, addPrimary)
	if err != nil {
		return nil, fmt.Errorf("rotate list keys: %w", err)
	}
	return out, nil
}

// RetireListIndex is [Keyring.RetireTenantIndex] for one of its lists.
func (t *TenantKeys) RetireListIndex(listID string, wrapped []byte) ([]byte, error) {
	out, err := rekey(listMagic, wrapped, t.aead, func(purpose string) []byte { return listAD(t.id, listID, purpose) }, dropOldPRF)
	if err != nil {
		return nil, fmt.Errorf("retire list index key: %w", err)
	}
	return out, nil
}

// rekey unwraps a keyset pair, changes each keyset with op and wraps the
// pair again under master.
func rekey(magic, wrapped []byte, master tink.AEAD, ad func(string) []byte, op func(purpose string, h *keyset.Handle) (*keyset.Handle, error)) ([]byte, error) {
	ah, ph, err := unwrapHandles(magic, wrapped, master, ad)
	if err != nil {
		return nil, err
	}
	if ah, err = op("aead", ah); err != nil {
		return nil, err
	}
	if ph, err = op("prf", ph); err != nil {
		return nil, err
	}
	return wrapPair(magic, ah, ph, master, ad)
}

func templateOf(purpose string) *tinkpb.KeyTemplate {
	if purpose == "aead" {
		return aead.AES256GCMKeyTemplate()
	}
	return prf.HMACSHA256PRFKeyTemplate()
}

// addPrimary adds a fresh key of the keyset's kind and makes it primary.
func addPrimary(purpose string, h *keyset.Handle) (*keyset.Handle, error) {
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(templateOf(purpose))
	if err != nil {
		return nil, fmt.Errorf("%s keyset: add key: %w", purpose, err)
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, fmt.Errorf("%s keyset: promote key: %w", purpose, err)
	}
	return m.Handle()
}

// dropOldPRF deletes every PRF key but the primary; the AEAD keyset is
// left as it is.
func dropOldPRF(purpose string, h *keyset.Handle) (*keyset.Handle, error) {
	if purpose != "prf" {
		return h, nil
	}
	info := h.KeysetInfo()
	m := keyset.NewManagerFromHandle(h)
	for _, ki := range info.GetKeyInfo() {
		if ki.GetKeyId() == info.GetPrimaryKeyId() {
			continue
		}
		if err := m.Delete(ki.GetKeyId()); err != nil {
			return nil, fmt.Errorf("prf keyset: delete key: %w", err)
		}
	}
	return m.Handle()
}

// retiring returns a PRF set's keys other than the primary, in key-id order.
func retiring(p *prf.Set) []prf.PRF {
	ids := make([]uint32, 0, len(p.PRFs))
	for id := range p.PRFs {
		if id != p.PrimaryID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]prf.PRF, len(ids))
	for i, id := range ids {
		out[i] = p.PRFs[id]
	}
	return out
}

// Reindexing reports whether the keys hold PRF keys besides the primary:
// a rotation's re-index has not retired them yet.
func (t *DataKeys) Reindexing() bool { return len(t.old) > 0 }

// BlindIndexes returns the blind index of a normalised address under the
// primary PRF key, then under each key a rotation is retiring: a lookup
// during the re-index finds a row indexed under either.
func (t *DataKeys) BlindIndexes(normalized string) [][]byte {
	out := [][]byte{t.BlindIndex(normalized)}
	for _, p := range t.old {
		b, err := p.ComputePRF([]byte(normalized), 32)
		if err != nil {
			panic("keys: blind index: " + err.Error()) // as in BlindIndex
		}
		out = append(out, b)
	}
	return out
}

// OldRowMACs returns the row MACs of msg under the keys a rotation is
// retiring (none outside a re-index): a row not yet re-indexed checks
// under one of them.
func (t *DataKeys) OldRowMACs(msg []byte) [][]byte {
	if len(msg) == 0 || msg[0] != 0 {
		panic("keys: a row MAC's message must start with a NUL byte")
	}
	var out [][]byte
	for _, p := range t.old {
		b, err := p.ComputePRF(msg, 32)
		if err != nil {
			panic("keys: row MAC: " + err.Error())
		}
		out = append(out, b)
	}
	return out
}
