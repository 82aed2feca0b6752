package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"

	"github.com/custos-dev/custos/audit"
)

// TestTesseraClientVerifiesLog points an outside verifier — tessera's
// client, which knows nothing of custos — at the C2SP tlog-tiles API of a
// running custos: it fetches and checks the signed checkpoint, reads entry
// bundles, builds inclusion proofs from our hash tiles and verifies them
// with transparency-dev/merkle, then follows the log to a larger checkpoint
// and proves the two consistent.
func TestTesseraClientVerifiesLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	appendN := func(n int) {
		for i := range n {
			l := audit.Leaf{Actor: "pr_tessera", Action: "contact.read", Tenant: "tn_tessera", Outcome: "ok", RequestID: fmt.Sprintf("rq_%d", i)}
			if _, err := e.log.Append(ctx, audit.Entry{Leaf: l}); err != nil {
				t.Fatal(err)
			}
		}
		e.sync()
		if _, err := e.log.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	appendN(300) // one full tile and a partial one

	root, _ := url.Parse(e.srv.URL + "/log/")
	f, err := client.NewHTTPFetcher(root, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	// No key: checkpoints, tiles and entry bundles (commitments) are public.
	cp, _, _, err := client.FetchCheckpoint(ctx, f.ReadCheckpoint, e.verifier, "custos.test/log")
	if err != nil {
		t.Fatalf("tessera client rejects our checkpoint: %v", err)
	}
	if cp.Size < 300 {
		t.Fatalf("checkpoint size %d, want at least 300", cp.Size)
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 1, 255, 256, 257, cp.Size - 1} {
		bundle, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, i/256, cp.Size)
		if err != nil {
			t.Fatalf("entry bundle for %d: %v", i, err)
		}
		leaf := bundle.Entries[i%256]
		if len(leaf) != 32 || bytes.Contains(leaf, []byte("tn_tessera")) {
			t.Fatalf("entry %d in the bundle is not a commitment: %q", i, leaf)
		}
		p, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatalf("inclusion proof for %d: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, rfc6962.DefaultHasher.HashLeaf(leaf), p, cp.Hash); err != nil {
			t.Fatalf("entry %d does not verify against the checkpoint: %v", i, err)
		}
	}

	tracker, err := client.NewLogStateTracker(ctx, f.ReadTile, nil, e.verifier, "custos.test/log", client.UnilateralConsensus(f.ReadCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	before := tracker.Latest().Size
	appendN(600)
	if _, p, _, err := tracker.Update(ctx); err != nil {
		t.Fatalf("tessera client finds the grown log inconsistent: %v", err)
	} else if len(p) == 0 || tracker.Latest().Size <= before {
		t.Fatalf("tracker did not move: size %d → %d, proof of %d hashes", before, tracker.Latest().Size, len(p))
	}
}
