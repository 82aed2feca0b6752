package audit_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
)

// forge signs a checkpoint body of our choosing with the log's own key: an
// insider with the key can do this, and only consistency catches it.
func forge(t *testing.T, e *logEnv, size uint64, root tlog.Hash) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))}, e.cfg.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestFollowerDetectsForkRollbackAndBadSignature(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	consistency := func(from, to uint64) (tlog.TreeProof, error) { return e.log.ConsistencyProof(ctx, from, to) }
	sign := func() []byte { return e.sign(t).Note }
	e.append(t, 10, "tn_a")
	cp10 := sign()
	e.append(t, 10, "tn_a")
	cp20 := sign()

	f := &audit.Follower{Verifier: e.verifier}
	if _, err := f.Advance(cp10, consistency); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Advance(cp20, consistency); err != nil {
		t.Fatalf("honest growth refused: %v", err)
	}
	if _, err := f.Advance(cp20, consistency); err != nil {
		t.Fatalf("same checkpoint again refused: %v", err)
	}

	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"rollback", cp10, audit.ErrRollback},
		{"split view: same size, other root", forge(t, e, 20, tlog.Hash{1}), audit.ErrFork},
	}
	for _, c := range cases {
		g := *f
		if _, err := g.Advance(c.msg, consistency); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// A larger checkpoint whose root is not an extension of the trusted one.
	e.append(t, 10, "tn_a")
	g := *f
	if _, err := g.Advance(forge(t, e, 30, tlog.Hash{2}), consistency); !errors.Is(err, audit.ErrFork) {
		t.Errorf("forged growth: err = %v, want ErrFork", err)
	}
	// A checkpoint signed by another key of the same name.
	other, _, _ := audit.GenerateKey(origin)
	s, _ := note.NewSigner(other)
	bad, _ := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n30\n%s\n", origin, base64.StdEncoding.EncodeToString(make([]byte, 32)))}, s)
	g = *f
	if _, err := g.Advance(bad, consistency); err == nil {
		t.Error("checkpoint with a foreign signature accepted")
	}
	if f.Trusted.Size != 20 {
		t.Errorf("a refused checkpoint changed the trusted one: size %d", f.Trusted.Size)
	}
}

func TestFeedEntriesVerify(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	e.append(t, 30, "tn_a", "tn_b", "")
	e.sign(t)
	feed, err := e.log.TenantFeed(ctx, "tn_a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint(feed.Checkpoint, e.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if len(feed.Entries) != 10 {
		t.Fatalf("%d entries for tn_a, want 10", len(feed.Entries))
	}
	for i, fe := range feed.Entries {
		if err := audit.CheckFeedEntry(cp, fe, "tn_a", uint64(i)+1); err != nil {
			t.Fatalf("honest entry %d: %v", i, err)
		}
	}
	if err := audit.CheckFeedEntry(cp, feed.Entries[3], "tn_a", 3); !errors.Is(err, audit.ErrGap) {
		t.Errorf("skipped entry: err = %v, want ErrGap", err)
	}
	forged := feed.Entries[2]
	forged.Body = []byte(string(forged.Body[:len(forged.Body)-1]) + ` }`)
	if err := audit.CheckFeedEntry(cp, forged, "tn_a", 3); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("altered body: err = %v, want ErrBadProof", err)
	}
	resalted := feed.Entries[2]
	resalted.Salt = append([]byte(nil), resalted.Salt...)
	resalted.Salt[0] ^= 1
	if err := audit.CheckFeedEntry(cp, resalted, "tn_a", 3); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("altered salt: err = %v, want ErrBadProof", err)
	}
	unsalted := feed.Entries[2]
	unsalted.Salt = nil // passed off as a legacy entry
	if err := audit.CheckFeedEntry(cp, unsalted, "tn_a", 3); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("salt dropped: err = %v, want ErrBadProof", err)
	}
	wrong := feed.Entries[2]
	wrong.Proof = append([]tlog.Hash(nil), wrong.Proof...)
	wrong.Proof[0][0] ^= 1
	if err := audit.CheckFeedEntry(cp, wrong, "tn_a", 3); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("altered proof: err = %v, want ErrBadProof", err)
	}
	if err := audit.CheckFeedEntry(cp, feed.Entries[2], "tn_b", 3); err == nil {
		t.Error("another tenant's claim on an entry accepted")
	}
}
