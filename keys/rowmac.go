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

// RowMAC returns the keys' 32-byte PRF of msg, for the MAC of a row they
// seal (a contact's row, under its list's keys or, for a legacy list, its
// tenant's). It is the blind-index PRF, kept apart from it by its input: a
// row MAC's message starts with a NUL byte, which no normalised address
// (the blind index's input) contains. Shredding the keys shreds the MACs
// with the data.
func (t *DataKeys) RowMAC(msg []byte) []byte {
	if len(msg) == 0 || msg[0] != 0 {
		panic("keys: a row MAC's message must start with a NUL byte")
	}
	out, err := t.prf.ComputePrimaryPRF(msg, 32)
	if err != nil {
		panic("keys: row MAC: " + err.Error())
	}
	return out
}
