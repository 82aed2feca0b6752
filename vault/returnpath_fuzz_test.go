package vault

import (
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/keys"
)

// FuzzParseReturnPath: the local part of an inbound MAIL FROM or RCPT TO
// (outside input) is a return path of this relay only when it is exactly
// one the relay minted, up to case: the trap lets a canary's mail through
// as the relay's own copy, and a bounce suppresses a contact, by it.
func FuzzParseReturnPath(f *testing.F) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		f.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		f.Fatal(err)
	}
	k, _, err := keys.NewKeyring(kek).NewSystemPRF(verpKeyName)
	if err != nil {
		f.Fatal(err)
	}
	token := custos.NewID(custos.PrefixContact)
	minted := returnPath(k, token)
	for _, s := range []string{minted, strings.ToUpper(minted), minted + "x", "bounce+" + token + "-", "bounce+" + token, "bounce+", "", "bounce+ct_-abc", minted[:len(minted)-1]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, local string) {
		tok, ok := parseReturnPath(k, local)
		if !ok {
			if tok != "" && !custos.ValidID(custos.PrefixContact, tok) {
				t.Fatalf("refused %q but named %q", local, tok)
			}
			return
		}
		if !custos.ValidID(custos.PrefixContact, tok) {
			t.Fatalf("%q accepted with token %q", local, tok)
		}
		if !strings.EqualFold(returnPath(k, tok), local) {
			t.Fatalf("%q accepted but the relay mints %q for %s", local, returnPath(k, tok), tok)
		}
	})
}
