package keys

import "github.com/tink-crypto/tink-go/v2/keyset"

// KeysetInfo is what the key inventory (custos keys ls) says about one
// Tink keyset: the ids of its keys and which one is primary — never key
// material. Tink's binary format does not keep it beside the encrypted
// keyset, so it is read when the keyset is unwrapped.
type KeysetInfo struct {
	Purpose string // "aead", "prf", or "" for a system keyset
	Primary uint32 // the primary key's id: new ciphertexts and indexes use it
	Keys    int    // keys in the keyset (more than one after a rotation)
}

func infoOf(purpose string, h *keyset.Handle) KeysetInfo {
	ki := h.KeysetInfo()
	return KeysetInfo{Purpose: purpose, Primary: ki.GetPrimaryKeyId(), Keys: len(ki.GetKeyInfo())}
}

// Info describes the keys' two keysets, AEAD then PRF.
func (t *DataKeys) Info() []KeysetInfo { return t.info }

// Info describes the system keyset.
func (s *SystemPRF) Info() KeysetInfo { return s.info }

// Info describes the system keyset.
func (s *SystemAEAD) Info() KeysetInfo { return s.info }
