package audit_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

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

// TestProverSharesHashes: the proofs a Prover gives — through caches of
// tiles and rebuilt hashes shared by all its proofs — are the ones
// InclusionProof gives, in any order, under an older tree too, and when
// the caches are so small that they start over on almost every read.
func TestProverSharesHashes(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	const n = 600 // two full tiles at level 0, a partial one and one at level 1
	var es []audit.Entry
	for i := 0; i < n; i++ {
		es = append(es, audit.Entry{Leaf: leaf(i, "tn_a")})
	}
	if _, err := e.log.AppendAll(ctx, es); err != nil {
		t.Fatal(err)
	}
	e.sign(t)
	st, err := e.log.Entries(ctx, 0, n)
	if err != nil || len(st) != n {
		t.Fatalf("%d entries, %v", len(st), err)
	}
	forward := make([]uint64, n)
	for i := range forward {
		forward[i] = uint64(i)
	}
	backward := slices.Clone(forward)
	slices.Reverse(backward)
	shuffled := slices.Clone(forward)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, bounds := range [][2]int{{512, 1 << 15}, {1, 4}} {
		audit.SetProofReaderBounds(t, bounds[0], bounds[1])
		for _, size := range []uint64{n, 300, 256, 1} {
			root, err := e.log.TreeHash(ctx, size)
			if err != nil {
				t.Fatal(err)
			}
			for _, order := range [][]uint64{forward, backward, shuffled} {
				prove, err := e.log.Prover(ctx, size)
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range order {
					if i >= size {
						continue
					}
					got, err := prove(i)
					if err != nil {
						t.Fatal(err)
					}
					want, err := e.log.InclusionProof(ctx, i, size)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("bounds %v, size %d: proof of %d differs from InclusionProof's", bounds, size, i)
					}
					if err := tlog.CheckRecord(got, int64(size), root, int64(i), tlog.RecordHash(st[i].Leaf)); err != nil {
						t.Fatalf("bounds %v, size %d: proof of %d: %v", bounds, size, i, err)
					}
				}
				if _, err := prove(size); err == nil {
					t.Fatalf("size %d: a proof of index %d", size, size)
				}
			}
		}
	}
}

// TestProveAll: ProveAll's proofs — runs of entries proven in parallel,
// each run's tiles read a range at a time — are InclusionProof's, for
// dense and sparse sets of entries, in any order, under older trees, with
// tiny caches, one worker or several; an index at or past the size, or a
// tile that is missing or malformed, fails the whole call.
func TestProveAll(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	const n = 1500 // 5 full tiles at level 0, a partial one, and one at level 1
	var es []audit.Entry
	for i := 0; i < n; i++ {
		es = append(es, audit.Entry{Leaf: leaf(i, "tn_a")})
	}
	if _, err := e.log.AppendAll(ctx, es); err != nil {
		t.Fatal(err)
	}
	e.sign(t)
	st, err := e.log.Entries(ctx, 0, n)
	if err != nil || len(st) != n {
		t.Fatalf("%d entries, %v", len(st), err)
	}
	sets := map[string][]uint64{}
	for i := uint64(0); i < n; i++ {
		sets["all"] = append(sets["all"], i)
		if i%37 == 0 {
			sets["sparse"] = append(sets["sparse"], i)
		}
		if i/256%3 == 1 || i > 1400 {
			sets["tiles with gaps"] = append(sets["tiles with gaps"], i)
		}
	}
	sets["shuffled"] = slices.Clone(sets["sparse"])
	rand.Shuffle(len(sets["shuffled"]), func(i, j int) { sets["shuffled"][i], sets["shuffled"][j] = sets["shuffled"][j], sets["shuffled"][i] })
	sets["one"] = []uint64{1321}
	sets["none"] = nil
	// InclusionProof's answers, computed once.
	wants := map[[2]uint64]tlog.RecordProof{}
	want := func(i, size uint64) tlog.RecordProof {
		p, ok := wants[[2]uint64{i, size}]
		if !ok {
			if p, err = e.log.InclusionProof(ctx, i, size); err != nil {
				t.Fatal(err)
			}
			wants[[2]uint64{i, size}] = p
		}
		return p
	}
	for _, cfg := range []struct{ workers, chunk, tiles, hashes int }{{4, 512, 512, 1 << 15}, {1, 512, 512, 1 << 15}, {3, 7, 1, 4}, {2, 1, 4, 300}} {
		audit.SetProveWorkers(t, cfg.workers, cfg.chunk)
		audit.SetProofReaderBounds(t, cfg.tiles, cfg.hashes)
		for _, size := range []uint64{n, 1300, 256, 1} {
			root, err := e.log.TreeHash(ctx, size)
			if err != nil {
				t.Fatal(err)
			}
			for name, set := range sets {
				var idx []uint64
				for _, i := range set {
					if i < size {
						idx = append(idx, i)
					}
				}
				got, err := e.log.ProveAll(ctx, size, idx)
				if err != nil {
					t.Fatalf("%+v, size %d, %s: %v", cfg, size, name, err)
				}
				if len(got) != len(idx) {
					t.Fatalf("%+v, size %d, %s: %d proofs for %d entries", cfg, size, name, len(got), len(idx))
				}
				for j, i := range idx {
					if !slices.Equal(got[j], want(i, size)) {
						t.Fatalf("%+v, size %d, %s: proof of %d differs from InclusionProof's", cfg, size, name, i)
					}
					if err := tlog.CheckRecord(got[j], int64(size), root, int64(i), tlog.RecordHash(st[i].Leaf)); err != nil {
						t.Fatalf("%+v, size %d, %s: proof of %d: %v", cfg, size, name, i, err)
					}
				}
			}
			if _, err := e.log.ProveAll(ctx, size, []uint64{0, size}); err == nil {
				t.Fatalf("size %d: a proof of index %d", size, size)
			}
		}
	}
	audit.SetProveWorkers(t, 4, 512)
	// A tile gone or cut short: no proofs, an error (not a wrong proof).
	if _, err := e.db.Write.ExecContext(ctx, `UPDATE audit_tiles SET data = $1 WHERE level = 0 AND idx = 3`, make([]byte, 40)); err != nil {
		t.Fatal(err)
	}
	if ps, err := e.log.ProveAll(ctx, n, sets["all"]); err == nil || ps != nil {
		t.Fatalf("a malformed tile: %d proofs, %v", len(ps), err)
	}
	if _, err := e.db.Write.ExecContext(ctx, `DELETE FROM audit_tiles WHERE level = 0 AND idx = 3`); err != nil {
		t.Fatal(err)
	}
	if ps, err := e.log.ProveAll(ctx, n, []uint64{3*256 + 3}); err == nil || ps != nil {
		t.Fatalf("a missing tile: %d proofs, %v", len(ps), err)
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
