package audit_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

func signed(t testing.TB, skey, body string) []byte {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestParseCheckpoint(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	v, _ := note.NewVerifier(vkey)
	otherS, _, _ := note.GenerateKey(rand.Reader, origin)
	root := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	good := origin + "\n42\n" + root + "\n"
	cp, err := audit.ParseCheckpoint(signed(t, skey, good), v)
	if err != nil || cp.Size != 42 || cp.Origin != origin {
		t.Fatalf("good checkpoint: %+v, %v", cp, err)
	}
	for name, msg := range map[string][]byte{
		"wrong key":        signed(t, otherS, good),
		"unsigned":         []byte(good + "\n"),
		"wrong origin":     signed(t, skey, "other.log\n42\n"+root+"\n"),
		"size not decimal": signed(t, skey, origin+"\n0x2a\n"+root+"\n"),
		"leading zero":     signed(t, skey, origin+"\n042\n"+root+"\n"),
		"negative size":    signed(t, skey, origin+"\n-1\n"+root+"\n"),
		"short root":       signed(t, skey, origin+"\n42\nAAAA\n"),
		"root not base64":  signed(t, skey, origin+"\n42\n!!!!\n"),
		"missing root":     signed(t, skey, origin+"\n42\n"),
		"extension line":   signed(t, skey, good+"ext\n"),
	} {
		if _, err := audit.ParseCheckpoint(msg, v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Altering the body of a signed note breaks the signature.
	msg := signed(t, skey, good)
	forged := []byte(strings.Replace(string(msg), "\n42\n", "\n43\n", 1))
	if _, err := audit.ParseCheckpoint(forged, v); err == nil {
		t.Error("accepted an altered checkpoint")
	}
}

func TestCheckpointsFollowTheLog(t *testing.T) {
	e := newLog(t)
	e.append(t, 5, "tn_a")
	cp, err := e.log.SignCheckpoint(context.Background())
	if err != nil || cp.Size != 5 {
		t.Fatalf("checkpoint %+v, %v", cp, err)
	}
	root, _ := e.log.TreeHash(context.Background(), 5)
	if cp.Root != root {
		t.Fatal("checkpoint root differs from the tree")
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	v, _ := note.NewVerifier(vkey)
	f.Add(signed(f, skey, origin+"\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add(signed(f, skey, origin+"\n0\n\n"))
	f.Add([]byte("custos.test/log\n1\nAAAA\n\n— custos.test/log AAAA\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := audit.ParseCheckpoint(msg, v)
		if err != nil {
			return
		}
		// Whatever parses must be signed by our key and round-trip.
		if cp.Origin != origin || string(cp.Note) != string(msg) {
			t.Fatalf("parsed %+v from %q", cp, msg)
		}
	})
}
