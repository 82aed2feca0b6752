package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
)

// A feed page spans many tiles and shares one proof reader: every proof
// it serves verifies against its checkpoint — also when the reader's
// caches are tiny and start over mid-page — and the checkpoint is kept.
func TestFeedPagesAcrossTilesVerify(t *testing.T) {
	for _, bounds := range []struct{ tiles, hashes int }{{512, 1 << 15}, {1, 4}} {
		audit.SetProofReaderBounds(t, bounds.tiles, bounds.hashes)
		e := newLog(t)
		e.appendConcurrently(t, 3000) // tenants tn_0..tn_2, 1000 each
		ctx := context.Background()
		var after uint64
		pages, total := 0, 0
		for {
			f, err := e.log.TenantFeed(ctx, "tn_1", after, 300)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := audit.ParseCheckpoint(f.Checkpoint, e.verifier)
			if err != nil {
				t.Fatal(err)
			}
			for _, fe := range f.Entries {
				if err := audit.CheckFeedEntry(cp, fe, "tn_1", after+1); err != nil {
					t.Fatalf("bounds %v: entry %d: %v", bounds, fe.Index, err)
				}
				after = fe.TenantSeq
				total++
			}
			pages++
			var kept sql.NullString
			if err := e.db.Read.QueryRow(`SELECT kept FROM audit_checkpoints WHERE size = $1`, int64(cp.Size)).Scan(&kept); err != nil || kept.String != audit.KeptFeed {
				t.Fatalf("the feed's checkpoint of size %d is not kept: %q, %v", cp.Size, kept.String, err)
			}
			if !f.More {
				break
			}
		}
		if total != 1000 || pages != 4 {
			t.Fatalf("bounds %v: %d entries in %d pages, want 1000 in 4", bounds, total, pages)
		}
	}
}

// A shared page (proofs=shared) is about half the hashes, expands back to
// the whole proofs, and a wrong shared count fails the proof.
func TestSharedProofsExpandAndVerify(t *testing.T) {
	e := newLog(t)
	e.appendConcurrently(t, 3000)
	ctx := context.Background()
	f, err := e.log.TenantFeed(ctx, "tn_1", 0, 300)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint(f.Checkpoint, e.verifier)
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, fe := range f.Entries {
		full += len(fe.Proof)
	}
	shared := append([]audit.FeedEntry(nil), f.Entries...)
	audit.ShareProofs(shared)
	sent := 0
	var prev []tlog.Hash
	for i, fe := range shared {
		sent += len(fe.Proof)
		proof, err := audit.ExpandProof(prev, fe.Proof, fe.Shared)
		if err != nil {
			t.Fatal(err)
		}
		prev = proof
		fe.Proof = proof
		if err := audit.CheckFeedEntry(cp, fe, "tn_1", uint64(i)+1); err != nil {
			t.Fatalf("entry %d of a shared page: %v", i, err)
		}
	}
	if sent*2 > full {
		t.Errorf("a shared page sends %d hashes of %d", sent, full)
	}
	// The server lies about how much is shared: the proof fails.
	fe := shared[5]
	p4, _ := audit.ExpandProof(nil, shared[0].Proof, 0)
	for i := 1; i < 5; i++ {
		p4, _ = audit.ExpandProof(p4, shared[i].Proof, shared[i].Shared)
	}
	if fe.Shared > 0 {
		proof, err := audit.ExpandProof(p4, fe.Proof, fe.Shared-1)
		if err == nil {
			fe.Proof = proof
			if err := audit.CheckFeedEntry(cp, fe, "tn_1", 6); !errors.Is(err, audit.ErrBadProof) {
				t.Errorf("a wrong shared count: %v, want ErrBadProof", err)
			}
		}
	}
	if _, err := audit.ExpandProof(p4, fe.Proof, len(p4)+1); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("sharing more than the previous proof holds: %v", err)
	}
	if _, err := audit.ExpandProof(nil, fe.Proof, -1); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("a negative shared count: %v", err)
	}
}

func FuzzExpandProof(f *testing.F) {
	f.Add(3, 2, 1)
	f.Add(0, 5, 0)
	f.Add(2, 1, 7)
	f.Fuzz(func(t *testing.T, prevLen, ownLen, shared int) {
		if prevLen < 0 || prevLen > 70 || ownLen < 0 || ownLen > 70 {
			return
		}
		prev, own := make([]tlog.Hash, prevLen), make([]tlog.Hash, ownLen)
		for i := range prev {
			prev[i][0] = byte(i)
		}
		p, err := audit.ExpandProof(prev, own, shared)
		if err != nil {
			return
		}
		if shared < 0 || shared > prevLen || len(p) != ownLen+shared || len(p) > 64 {
			t.Fatalf("expanded %d+%d sharing %d into %d hashes", ownLen, prevLen, shared, len(p))
		}
		for i := 0; i < shared; i++ {
			if p[ownLen+i] != prev[prevLen-shared+i] {
				t.Fatal("the shared hashes are not the previous proof's end")
			}
		}
	})
}
