package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
)

// A tenant's feed with page proofs (TenantFeedPage): every page verifies
// with CheckFeedPage against its checkpoint, pages cover the tenant's
// entries with no gap, the checkpoint is kept, and the hand-written JSON
// of a page decodes to the same page as encoding/json's — also with tiny
// proof reader caches that start over mid-page. Both engines.
func TestFeedPageProofs(t *testing.T) {
	for _, bounds := range []struct{ tiles, hashes int }{{512, 1 << 15}, {1, 4}} {
		audit.SetProofReaderBounds(t, bounds.tiles, bounds.hashes)
		e := newLog(t)
		e.appendConcurrently(t, 3000) // tenants tn_0..tn_2, 1000 each
		ctx := context.Background()
		var after uint64
		pages, total := 0, 0
		for {
			f, err := e.log.TenantFeedPage(ctx, "tn_1", after, 300)
			if err != nil {
				t.Fatal(err)
			}
			var viaStd, viaAppend audit.Feed
			std, _ := json.Marshal(f)
			if err := json.Unmarshal(std, &viaStd); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(f.AppendJSON(nil), &viaAppend); err != nil {
				t.Fatalf("AppendJSON is not JSON: %v", err)
			}
			if !reflect.DeepEqual(viaStd, viaAppend) {
				t.Fatalf("AppendJSON and encoding/json decode to different pages")
			}
			cp, err := audit.ParseCheckpoint(viaAppend.Checkpoint, e.verifier)
			if err != nil {
				t.Fatal(err)
			}
			if len(viaAppend.PageProof) == 0 {
				t.Fatal("a page with entries has no page proof")
			}
			for _, fe := range viaAppend.Entries {
				if len(fe.Proof) != 0 {
					t.Fatal("an entry of a page-proved page carries its own proof")
				}
			}
			if err := audit.CheckFeedPage(cp, viaAppend.Entries, viaAppend.PageProof, "tn_1", after+1); err != nil {
				t.Fatalf("bounds %v: page after %d: %v", bounds, after, err)
			}
			if n := len(viaAppend.Entries); n > 0 {
				after = viaAppend.Entries[n-1].TenantSeq
				total += n
			}
			pages++
			if !f.More {
				break
			}
		}
		if total != 1000 || pages != 4 {
			t.Fatalf("bounds %v: %d entries in %d pages, want 1000 in 4", bounds, total, pages)
		}
	}
}

// The page proof agrees with tlog's own tree: for random trees and random
// sets of leaves (sparse, dense, first, last, the whole tree), the proof
// built from tlog.StoredHashes rebuilds tlog.TreeHash, and any change — a
// leaf, an index, a proof byte, a leaf left out — is refused.
func TestPageProofAgainstTlog(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 2, 3, 7, 8, 255, 256, 257, 1000, 4097} {
		bodies := make([][]byte, size)
		var stored []tlog.Hash
		r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ix))
			for i, x := range ix {
				out[i] = stored[x]
			}
			return out, nil
		})
		for i := range size {
			bodies[i] = fmt.Appendf(nil, `{"tenant":"tn_%d","tenant_seq":%d}`, i%3, i/3+1)
			hs, err := tlog.StoredHashes(int64(i), bodies[i], r)
			if err != nil {
				t.Fatal(err)
			}
			stored = append(stored, hs...)
		}
		root, err := tlog.TreeHash(int64(size), r)
		if err != nil {
			t.Fatal(err)
		}
		cp := &audit.Checkpoint{Size: uint64(size), Root: root}
		for trial := range 6 {
			// Tenant tn_1's entries from a random one on, a random count.
			var mine []int
			for i := 1; i < size; i += 3 {
				mine = append(mine, i)
			}
			if len(mine) == 0 {
				continue
			}
			from := rng.IntN(len(mine))
			n := 1 + rng.IntN(len(mine)-from)
			if trial == 0 {
				from, n = 0, len(mine)
			}
			var es []audit.FeedEntry
			var idx []uint64
			for _, i := range mine[from : from+n] {
				es = append(es, audit.FeedEntry{TenantSeq: uint64(i/3 + 1), Index: uint64(i), Body: bodies[i]})
				idx = append(idx, uint64(i))
			}
			proof, err := audit.ProvePage(r, uint64(size), idx)
			if err != nil {
				t.Fatal(err)
			}
			want := uint64(from + 1)
			if err := audit.CheckFeedPage(cp, es, proof, "tn_1", want); err != nil {
				t.Fatalf("size %d, %d entries from %d: %v", size, n, from, err)
			}
			// Each change is refused.
			bad := func(what string, es []audit.FeedEntry, proof []byte) {
				t.Helper()
				if err := audit.CheckFeedPage(cp, es, proof, "tn_1", want); err == nil {
					t.Fatalf("size %d: accepted %s", size, what)
				}
			}
			k := rng.IntN(len(es))
			flip := bytes.Clone(proof)
			if len(flip) > 0 {
				flip[rng.IntN(len(flip))] ^= 1
				bad("a changed proof byte", es, flip)
				bad("a truncated proof", es, proof[:len(proof)-1])
				bad("a proof short of a hash", es, proof[:len(proof)-tlog.HashSize])
			}
			bad("a proof with a hash too many", es, append(bytes.Clone(proof), make([]byte, tlog.HashSize)...))
			changed := cloneEntries(es)
			changed[k].Body = bytes.Replace(changed[k].Body, []byte(`"tenant_seq"`), []byte(`"tenant_seq" `), 1)
			bad("a changed body", changed, proof)
			moved := cloneEntries(es)
			moved[k].Index++
			bad("a moved entry", moved, proof)
			if len(es) > 1 {
				bad("the last entry left out", es[:len(es)-1], proof)
				bad("the entries in the wrong order", append(cloneEntries(es[1:]), es[0]), proof)
			}
			if len(es) > 2 {
				gap := append(cloneEntries(es[:1]), es[2:]...)
				if err := audit.CheckFeedPage(cp, gap, proof, "tn_1", want); !errors.Is(err, audit.ErrGap) {
					t.Fatalf("size %d: an entry left out of the middle: %v, want a gap", size, err)
				}
			}
			other := cloneEntries(es)
			if o := int(es[k].Index) + 1; o < size {
				other[k].Body = bodies[o] // another tenant's entry, its own leaf
				other[k].Index = uint64(o)
				bad("another tenant's entry", other, proof)
			}
		}
	}
}

func cloneEntries(es []audit.FeedEntry) []audit.FeedEntry {
	out := make([]audit.FeedEntry, len(es))
	for i, e := range es {
		e.Body = bytes.Clone(e.Body)
		out[i] = e
	}
	return out
}

// FuzzCheckFeedPage: a page and its proof are outside input; checking
// never panics and accepts only the honest page (a 3-entry page of a
// 9-leaf tree), whatever the bytes.
func FuzzCheckFeedPage(f *testing.F) {
	const size = 9
	bodies := make([][]byte, size)
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i := range size {
		bodies[i] = fmt.Appendf(nil, `{"tenant":"tn_%d","tenant_seq":%d}`, i%3, i/3+1)
		hs, _ := tlog.StoredHashes(int64(i), bodies[i], r)
		stored = append(stored, hs...)
	}
	root, _ := tlog.TreeHash(size, r)
	cp := &audit.Checkpoint{Size: size, Root: root}
	proof, err := audit.ProvePage(r, size, []uint64{1, 4, 7})
	if err != nil {
		f.Fatal(err)
	}
	honest := &audit.Feed{PageProof: proof}
	for _, i := range []int{1, 4, 7} {
		honest.Entries = append(honest.Entries, audit.FeedEntry{TenantSeq: uint64(i/3 + 1), Index: uint64(i), Body: bodies[i]})
	}
	good := honest.AppendJSON(nil)
	f.Add(good)
	f.Add([]byte(`{"entries":[{"tenant_seq":1,"index":1,"body":{"tenant":"tn_1","tenant_seq":1}}],"page_proof":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p audit.Feed
		if json.Unmarshal(b, &p) != nil {
			return
		}
		err := audit.CheckFeedPage(cp, p.Entries, p.PageProof, "tn_1", 1)
		if err != nil {
			return
		}
		if len(p.Entries) == 0 {
			return // nothing accepted
		}
		if len(p.Entries) != 3 || !bytes.Equal(p.PageProof, proof) {
			t.Fatalf("accepted a forged page: %s", b)
		}
		for k, i := range []int{1, 4, 7} {
			if e := p.Entries[k]; e.Index != uint64(i) || !bytes.Equal(e.Body, bodies[i]) || len(e.Salt) != 0 {
				t.Fatalf("accepted a forged entry: %s", b)
			}
		}
	})
}

// FuzzDecodeLeafKeys: the fast decoding of an entry's keys (verification,
// a feed's client) accepts exactly what json.Unmarshal accepts and reads
// the same fields: whatever the bytes, both agree on "is it JSON" and on
// every field.
func FuzzDecodeLeafKeys(f *testing.F) {
	l := audit.Leaf{Actor: "pr_x", ActorSeq: 7, ActorKind: "tenant_admin", KeyID: "ak_x", Source: "10.0.0.1", Action: "contact.read",
		Tenant: "tn_a", TenantSeq: 3, List: "ls_x", Tokens: []string{"ct_a", "ct_b"}, Outcome: "ok", RequestID: "rq_x"}
	b, _ := json.Marshal(l)
	f.Add(b)
	f.Add([]byte(`{"tenant":"tn_a","Tenant":"tn_b","tenant_seq":1}`))
	f.Add([]byte(`{"tenant":"tn_a","tenant":"tn_b"}`))
	f.Add([]byte(`{"tenant":"t\u006e_a","tenant_seq":01}`))
	f.Add([]byte(`{"tenant_seq":18446744073709551616,"x":[1],"y":{"tenant":"z"}}`))
	f.Add([]byte(`{"tenant":null,"actor_seq":1.0,"ok":true,"no":false,"n":null,"a":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast audit.LeafKeys
		errFast := audit.DecodeLeafKeys(b, &fast)
		var std audit.LeafKeys
		errStd := json.Unmarshal(b, &std)
		if (errFast == nil) != (errStd == nil) {
			t.Fatalf("%q: fast path error %v, encoding/json error %v", b, errFast, errStd)
		}
		if errStd == nil && fast != std {
			t.Fatalf("%q: fast path read %+v, encoding/json %+v", b, fast, std)
		}
		if audit.FastLeafKeys(b) && !json.Valid(b) {
			t.Fatalf("%q: the fast path took a body that is not JSON", b)
		}
	})
}

// The bodies the sequencer writes take the fast path (else it would be
// no faster), and a body it cannot be sure of does not.
func TestFastLeafKeysTakesSequencerBodies(t *testing.T) {
	l := audit.Leaf{Actor: "pr_x", ActorSeq: 7, ActorKind: "tenant_admin", KeyID: "ak_x", Source: "10.0.0.1", Action: "contact.read",
		Tenant: "tn_a", TenantSeq: 3, List: "ls_x", Tokens: []string{"ct_a"}, Outcome: "ok", RequestID: "rq_x", Count: 2}
	b, _ := json.Marshal(l)
	if !audit.FastLeafKeys(b) {
		t.Fatalf("a sequencer body is not on the fast path: %s", b)
	}
	for _, odd := range []string{`{"tenant":"a","TENANT":"b"}`, `{"tenant":"a\"b"}`, `{ "tenant":"a"}`, `{"tenant":"a","tenant":"b"}`, `{"x":{"tenant":"a"}}`} {
		if audit.FastLeafKeys([]byte(odd)) {
			t.Errorf("%s took the fast path", odd)
		}
	}
}
