package audit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
)

// TestLeavesAreCommitments: what the tree hashes and bundles carry is a
// fresh salted commitment to each body, never the body; the body and salt
// the log returns open it.
func TestLeavesAreCommitments(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	// Two identical bodies (same request id, tenant, time) still get
	// different leaves: nothing can be learnt by comparing or guessing.
	now := e.log.Size()
	twin := leaf(0, "tn_secret")
	for range 2 {
		if _, err := e.log.Append(ctx, audit.Entry{Leaf: twin}); err != nil {
			t.Fatal(err)
		}
	}
	e.append(t, 300, "tn_secret", "tn_other", "")
	st, err := e.log.Entries(ctx, now, 302)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if len(s.Leaf) != 32 || len(s.Salt) != audit.SaltSize {
			t.Fatalf("entry %d: leaf %d bytes, salt %d bytes", s.Index, len(s.Leaf), len(s.Salt))
		}
		if !bytes.Equal(audit.Commit(s.Salt, s.Data), s.Leaf) {
			t.Fatalf("entry %d: body and salt do not open the leaf", s.Index)
		}
		var l audit.Leaf
		if err := json.Unmarshal(s.Data, &l); err != nil || l.Action != "contact.read" {
			t.Fatalf("entry %d: body %q is not the leaf's JSON", s.Index, s.Data)
		}
	}
	if bytes.Equal(st[0].Leaf, st[1].Leaf) || bytes.Equal(st[0].Salt, st[1].Salt) {
		t.Fatal("two entries share a salt or a leaf")
	}
	for _, n := range []uint64{0, 1} {
		b, err := e.log.ReadEntryBundle(ctx, n, min(256, int(e.log.Size()-n*256)))
		if err != nil {
			t.Fatal(err)
		}
		// Needles of 7 bytes or more: a bundle is 8 KiB of random
		// commitments, which hold any given 3 bytes about once in 2 000
		// bundles (a "rq_" needle failed CI so).
		for _, secret := range []string{"tn_secret", "tn_other", "pr_test", `"request_id"`, "contact.read"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Fatalf("entry bundle %d names %q", n, secret)
			}
		}
		for i := 0; len(b) > 0; i++ {
			size := int(binary.BigEndian.Uint16(b))
			if size != 32 {
				t.Fatalf("bundle %d entry %d is %d bytes, want a 32-byte commitment", n, i, size)
			}
			b = b[2+size:]
		}
	}
}

// TestEntriesCatchChangedBody: Entries (the detector's read) and Entry
// refuse a row whose body, salt or commitment was changed, with a
// *VerifyError naming it.
func TestEntriesCatchChangedBody(t *testing.T) {
	for _, tc := range []struct{ name, q string }{
		{"body", `UPDATE audit_leaves SET data = $1 WHERE idx = 5`},
		{"salt", `UPDATE audit_leaves SET salt = $1 WHERE idx = 5`},
		{"commitment", `UPDATE audit_leaves SET leaf = $1 WHERE idx = 5`},
		{"body and commitment", `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 5`},
		{"made legacy", `UPDATE audit_leaves SET data = $1, leaf = NULL, salt = NULL WHERE idx = 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLog(t)
			ctx := context.Background()
			e.append(t, 300, "tn_a") // entry 5 in a full tile, stored
			if _, err := e.log.Entries(ctx, 0, 10); err != nil {
				t.Fatalf("untampered: %v", err)
			}
			if _, err := e.db.Write.Exec(tc.q, tamperArgs(t, e, tc.q)...); err != nil {
				t.Fatal(err)
			}
			var ve *audit.VerifyError
			if _, err := e.log.Entries(ctx, 0, 10); !errors.As(err, &ve) || ve.Index != 5 {
				t.Fatalf("Entries after changing the %s: %v; want a *VerifyError at 5", tc.name, err)
			}
			if _, err := e.log.Entry(ctx, 5); !errors.As(err, &ve) {
				t.Fatalf("Entry after changing the %s: %v; want a *VerifyError", tc.name, err)
			}
			if _, err := e.log.Entries(ctx, 6, 4); err != nil {
				t.Fatalf("entries after the changed one: %v", err)
			}
			e.log.Close()
			if _, err := e.verify(t); !errors.As(err, &ve) || ve.Index != 5 {
				t.Fatalf("Verify after changing the %s: %v; want a *VerifyError at 5", tc.name, err)
			}
		})
	}
}

// TestEdgeEntriesCatchChangedBody: level 0's partial tile is not stored
// (audit/tiles.go), so a row among the newest < 256 rewritten with a
// commitment of its own has no stored tile hash to differ from. The
// log's own process still refuses it (its sequencer's hashes), another
// process's Entries and an offline Verify refuse it by the checkpoint
// signed over the original, and the row is not silently taken as true.
func TestEdgeEntriesCatchChangedBody(t *testing.T) {
	const q = `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 5`
	e := newLog(t)
	ctx := context.Background()
	e.append(t, 10, "tn_a")
	if _, err := e.log.Entries(ctx, 0, 10); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	if _, err := e.db.Write.Exec(q, tamperArgs(t, e, q)...); err != nil {
		t.Fatal(err)
	}
	var ve *audit.VerifyError
	if _, err := e.log.Entries(ctx, 0, 10); !errors.As(err, &ve) || ve.Index != 5 {
		t.Fatalf("Entries (the sequencing process) after a rewrite at the edge: %v; want a *VerifyError at 5", err)
	}
	e.log.Close()
	_, err := e.verify(t)
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "do not match the checkpoint signed at size 10") || ve.Index > 5 {
		t.Fatalf("Verify after a rewrite at the edge: %v; want the checkpoint over entries 0…9 refusing it", err)
	}
	// Reopened, the log sequences nothing yet: its monitor proves the
	// stored entries against the signed checkpoint and reports them.
	cfg := e.cfg
	cfg.VerifyInterval = time.Hour
	lg, err := audit.Open(ctx, e.db.Read, e.db.Write, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	if lg.Integrity() == nil {
		t.Fatal("a reopened log with a rewritten edge entry reports its integrity intact")
	}
}

// TestLegacyEntriesStillVerify: a log written before commitments (leaf =
// JSON body) and upgraded keeps verifying, old entries and new alike, for
// Verify, Entries, the tenant feed and offline proofs; its old entries
// stay readable in the bundles, as documented.
func TestLegacyEntriesStillVerify(t *testing.T) {
	db := storetest.Open(t)
	ctx := context.Background()
	var old []audit.Leaf
	for i := range 20 {
		old = append(old, leaf(i, []string{"tn_a", "tn_b", ""}[i%3]))
	}
	if err := audit.WriteLegacy(ctx, db.Write, old); err != nil {
		t.Fatal(err)
	}
	skey, vkey, _ := audit.GenerateKey(origin)
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	e := &logEnv{db: db, verifier: verifier, cfg: audit.Config{Origin: origin, Signer: signer, Verifier: verifier, Placeholders: db.Placeholders}}
	var err error
	if e.log, err = audit.Open(ctx, db.Read, db.Write, e.cfg); err != nil {
		t.Fatal(err)
	}
	defer e.log.Close()
	e.append(t, 20, "tn_a", "tn_b", "")
	cp, err := e.log.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.log.Entries(ctx, 0, 40)
	if err != nil {
		t.Fatalf("Entries over legacy and committed entries: %v", err)
	}
	if st[0].Salt != nil || !bytes.Equal(st[0].Leaf, st[0].Data) || st[39].Salt == nil {
		t.Fatal("legacy entries must have their body as leaf, new ones a salt")
	}
	if b, _ := e.log.ReadEntryBundle(ctx, 0, 40); !bytes.Contains(b, []byte("tn_a")) {
		t.Fatal("legacy entries are expected to stay readable in the bundles")
	}
	feed, err := e.log.TenantFeed(ctx, "tn_a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(feed.Entries) != 14 {
		t.Fatalf("%d feed entries for tn_a, want 14", len(feed.Entries))
	}
	for i, fe := range feed.Entries {
		if err := audit.CheckFeedEntry(cp, fe, "tn_a", uint64(i)+1); err != nil {
			t.Fatalf("feed entry %d: %v", i, err)
		}
	}
	for _, idx := range []uint64{3, 33} {
		hashes, err := e.log.InclusionProof(ctx, idx, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		p := &audit.Proof{Entry: st[idx].Opening(), Index: idx, Hashes: hashes, Checkpoint: cp.Note}
		if _, err := p.Verify(verifier); err != nil {
			t.Fatalf("proof of entry %d: %v", idx, err)
		}
	}
	e.log.Close()
	rep, err := e.verify(t)
	if err != nil {
		t.Fatalf("Verify of an upgraded log: %v", err)
	}
	if rep.Size != 40 {
		t.Fatalf("verified %d entries, want 40", rep.Size)
	}
}

// FuzzCheckFeedEntry feeds CheckFeedEntry entries as a hostile server could
// send them (a feed is outside input to `custos audit pull`): it must
// never panic, and must accept nothing but the honest entry.
func FuzzCheckFeedEntry(f *testing.F) {
	salt := make([]byte, audit.SaltSize)
	rand.Read(salt)
	body := []byte(`{"time":"2026-01-01T00:00:00Z","actor":"pr_x","action":"contact.read","tenant":"tn_a","tenant_seq":1,"outcome":"ok"}`)
	leaves := [][]byte{audit.Commit(salt, body), []byte(`{"actor":"pr_y","action":"list.read","outcome":"ok"}`)}
	hashes := []tlog.Hash{tlog.RecordHash(leaves[0]), tlog.RecordHash(leaves[1])}
	root := tlog.NodeHash(hashes[0], hashes[1])
	cp := &audit.Checkpoint{Size: 2, Root: root}
	honest, _ := json.Marshal(audit.FeedEntry{TenantSeq: 1, Index: 0, Body: body, Salt: salt, Proof: []tlog.Hash{hashes[1]}})
	f.Add(honest)
	f.Add([]byte(`{"tenant_seq":1,"index":0,"body":{"tenant":"tn_a","tenant_seq":1},"salt":"","proof":[]}`))
	f.Add([]byte(`{"tenant_seq":1,"index":1,"body":{"tenant":"tn_a","tenant_seq":1},"salt":"AAAA","proof":["` + strings.Repeat("A", 43) + `="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e audit.FeedEntry
		if json.Unmarshal(b, &e) != nil {
			return
		}
		err := audit.CheckFeedEntry(cp, e, "tn_a", 1)
		if err == nil && (e.Index != 0 || !bytes.Equal(e.Body, body) || !bytes.Equal(e.Salt, salt)) {
			t.Fatalf("accepted a forged entry: %s", b)
		}
	})
}

// FuzzParseOpening: an offline proof's entry is outside input; parsing it
// never panics and what parses re-encodes to the same bytes.
func FuzzParseOpening(f *testing.F) {
	salt := make([]byte, audit.SaltSize)
	f.Add(audit.Opening([]byte(`{"action":"x"}`), salt))
	f.Add([]byte(`{"action":"x"}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, salt, err := audit.ParseOpening(b)
		if err != nil {
			return
		}
		if got := audit.Opening(body, salt); !bytes.Equal(got, b) {
			t.Fatalf("opening %q re-encodes as %q", b, got)
		}
		if _, err := audit.LeafOf(body, salt); err != nil {
			t.Fatalf("parsed opening has no leaf: %v", err)
		}
	})
}

func ExampleCommit() {
	salt := bytes.Repeat([]byte{7}, audit.SaltSize)
	fmt.Printf("%x\n", audit.Commit(salt, []byte(`{"action":"contact.read"}`))[:8])
	// Output: abd1ec0166af236f
}
