package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// An entry's Merkle leaf is a commitment to it, not the entry itself: the
// tree, its tiles, checkpoints and entry bundles stay public and verifiable
// by anyone, while an entry's body (which names a tenant, an actor, a list,
// tokens) is served only to those it concerns. The commitment is a plain
// salted hash,
//
//	leaf = SHA-256(commitDomain || salt || body)
//
// with a fresh 32-byte salt from crypto/rand per entry, so that a body
// cannot be confirmed by guessing it (bodies are low-entropy: a tenant id,
// an action and a time would otherwise be enough). The salt has a fixed
// length, so domain, salt and body split one way only. The domain string
// keeps these hashes apart from any other SHA-256 of custos's.
//
// Entries written before commitments existed ("legacy", salt NULL in the
// database) keep their JSON body as their leaf: they verify as before and
// stay readable by anyone who reads entry bundles.
const commitDomain = "custos.dev/audit-entry-commitment/v1\n"

// SaltSize is the length of an entry's salt.
const SaltSize = 32

// Commit returns the leaf bytes that commit to body under salt.
func Commit(salt, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(commitDomain))
	h.Write(salt)
	h.Write(body)
	return h.Sum(nil)
}

// newSalt returns a fresh salt.
func newSalt() []byte {
	s := make([]byte, SaltSize)
	rand.Read(s) // never returns an error (crypto/rand, Go 1.24+)
	return s
}

// LeafOf returns the Merkle leaf bytes of an entry given its body and
// salt: the commitment, or for a legacy entry (no salt) the body itself.
// It fails if the salt has the wrong length.
func LeafOf(body, salt []byte) ([]byte, error) {
	if len(salt) == 0 {
		return body, nil
	}
	if len(salt) != SaltSize {
		return nil, fmt.Errorf("salt is %d bytes, want %d", len(salt), SaltSize)
	}
	return Commit(salt, body), nil
}

// Opening encodes body and salt as one byte string that opens a leaf:
// commitDomain || salt || body, whose SHA-256 is the leaf. A legacy
// entry's opening is its body. Offline proofs (C2SP tlog-proof) carry it
// as their "extra" data.
func Opening(body, salt []byte) []byte {
	if len(salt) == 0 {
		return body
	}
	b := make([]byte, 0, len(commitDomain)+len(salt)+len(body))
	b = append(b, commitDomain...)
	b = append(b, salt...)
	return append(b, body...)
}

// ParseOpening splits an opening into body and salt (nil salt: legacy,
// the opening is the body). It checks the form only; whether the leaf is
// in a tree is for a proof to say.
func ParseOpening(b []byte) (body, salt []byte, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(commitDomain))
	if !ok {
		if len(b) == 0 || b[0] != '{' {
			return nil, nil, errors.New("entry is neither a JSON body nor a commitment opening")
		}
		return b, nil, nil
	}
	if len(rest) < SaltSize {
		return nil, nil, errors.New("commitment opening too short for its salt")
	}
	return rest[SaltSize:], rest[:SaltSize], nil
}
