package audit

import (
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// FuzzFollowTransition feeds arbitrary transition statements to a chain
// (what every verifier does with the statements a server, a receipt or a
// state file hands it). Whatever is followed must be signed by the key it
// retires and by the key it names, be of the log's origin, start past the
// key it retires, and leave the chain answering for that key from there.
func FuzzFollowTransition(f *testing.F) {
	const origin = "custos.test/log"
	skey, vkey, _ := GenerateKey(origin)
	root, _ := note.NewSigner(skey)
	rootV, _ := note.NewVerifier(vkey)
	nkey, nvkey, _ := GenerateKey(origin)
	next, _ := note.NewSigner(nkey)
	good, _ := SignTransition(root, next, nvkey, 7, time.Unix(1700000000, 0))
	f.Add(good)
	f.Add([]byte(transitionBody(origin, nvkey, 7, time.Unix(0, 0))))
	f.Add(append(append([]byte{}, good...), good...))
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := NewKeyChain(rootV)
		tr, err := c.Follow(msg)
		if err != nil {
			if c.Rotated() {
				t.Fatal("a refused statement changed the chain")
			}
			return
		}
		if tr.Origin != origin || tr.FromSize == 0 {
			t.Fatalf("followed %+v", tr)
		}
		if _, err := note.Open(msg, note.VerifierList(rootV)); err != nil {
			t.Fatal("followed a statement the retiring key did not sign")
		}
		nv, err := note.NewVerifier(tr.NewKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(nv)); err != nil {
			t.Fatal("followed a statement the new key did not sign")
		}
		if c.At(tr.FromSize).KeyHash() != nv.KeyHash() || c.At(tr.FromSize-1).KeyHash() != rootV.KeyHash() {
			t.Fatal("the chain does not switch keys at the statement's size")
		}
	})
}
