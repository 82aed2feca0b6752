package keys

// Row MACs: security-relevant database rows carry a MAC so that someone
// with write access to the database, but not the KEK, cannot insert,
// alter or swap them unnoticed (docs/keys.md, "Row MACs").

// MAC returns the 32-byte PRF (HMAC-SHA256) of msg. It is the same
// function as [SystemPRF.Tag] on bytes, without the copy to a string.
func (s *SystemPRF) MAC(msg []byte) []byte {
	out, err := s.prf.ComputePrimaryPRF(msg, 32)
	if err != nil {
		panic("custos: system PRF failed: " + err.Error()) // HMAC-SHA256 with 32 bytes of output cannot fail
	}
	return out
}

// RowMAC returns the tenant's 32-byte PRF of msg, for the MAC of one of
// its rows (a contact's sealed row). It is the blind-index PRF, kept apart
// from it by its input: a row MAC's message starts with a NUL byte, which
// no normalised address (the blind index's input) contains. Deleting the
// tenant's keysets shreds the MACs with the data.
func (t *TenantKeys) RowMAC(msg []byte) []byte {
	if len(msg) == 0 || msg[0] != 0 {
		panic("keys: a row MAC's message must start with a NUL byte")
	}
	out, err := t.prf.ComputePrimaryPRF(msg, 32)
	if err != nil {
		panic("keys: row MAC: " + err.Error())
	}
	return out
}
