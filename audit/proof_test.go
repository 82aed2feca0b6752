package audit_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/custos-dev/custos/audit"
)

func TestOfflineProofRoundTrip(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	e.append(t, 40, "tn_a")
	cp := e.sign(t)
	st, err := e.log.Entries(ctx, 17, 1)
	if err != nil {
		t.Fatal(err)
	}
	entry := st[0].Opening()
	hashes, err := e.log.InclusionProof(ctx, 17, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	p := &audit.Proof{Entry: entry, Index: 17, Hashes: hashes, Checkpoint: cp.Note}
	b := p.Marshal()
	q, err := audit.ParseProof(b)
	if err != nil {
		t.Fatalf("parse our own proof: %v\n%s", err, b)
	}
	if !bytes.Equal(q.Marshal(), b) {
		t.Fatal("proof does not round-trip")
	}
	if _, err := q.Verify(e.verifier); err != nil {
		t.Fatalf("honest proof: %v", err)
	}
	if !bytes.Equal(q.Body(), st[0].Data) {
		t.Fatalf("proof body %q, want %q", q.Body(), st[0].Data)
	}
	q.Entry = bytes.Replace(q.Entry, []byte("contact.read"), []byte("contact.list"), 1)
	if _, err := q.Verify(e.verifier); !errors.Is(err, audit.ErrBadProof) {
		t.Fatalf("altered entry: %v, want ErrBadProof", err)
	}
	q, _ = audit.ParseProof(b)
	q.Index = 18
	if _, err := q.Verify(e.verifier); !errors.Is(err, audit.ErrBadProof) {
		t.Fatalf("wrong index: %v, want ErrBadProof", err)
	}
}

func FuzzParseProof(f *testing.F) {
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra e30=\nindex 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nx\n1\nAAAA\n\n— x AAAA\n"))
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 0\n\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := audit.ParseProof(b)
		if err != nil {
			return
		}
		q, err := audit.ParseProof(p.Marshal())
		if err != nil {
			t.Fatalf("re-parse of a parsed proof fails: %v", err)
		}
		if q.Index != p.Index || len(q.Hashes) != len(p.Hashes) || !bytes.Equal(q.Checkpoint, p.Checkpoint) {
			t.Fatal("proof does not round-trip")
		}
	})
}
