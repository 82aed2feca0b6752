package audit

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/tlog"
)

// A page proof proves a whole page of a tenant's feed at once: one set of
// hashes with which the entries' leaves, each at its index, rebuild the
// root of the feed's checkpoint. Per-entry inclusion proofs repeat the
// hashes above the page's span for every entry and make the client hash
// the whole path of each (about log2(n) hashings per entry); the page
// proof sends every hash once and the client hashes each node of the
// union of the paths once.
//
// The hashes are those of the compact ranges (transparency-dev/merkle's
// compact package, the same tree math as [Verify]) of the gaps the page
// leaves in [0, size): [0, i₁), (i₁, i₂), …, (iₖ, size), in that order,
// each range's nodes left to right. The client builds the compact range
// of [0, size) by appending, in order, each gap's range and each entry's
// leaf hash, and compares its root with the checkpoint's: a leaf changed,
// moved to another index, left out or added, or a hash of the proof
// changed, gives another root.

// pageProofNodes returns the nodes whose hashes make the page proof of
// the entries at idx (strictly increasing, each < size).
func pageProofNodes(size uint64, idx []uint64) ([]compact.NodeID, error) {
	var ids []compact.NodeID
	begin := uint64(0)
	for _, i := range idx {
		if i < begin || i >= size {
			return nil, fmt.Errorf("page proof: index %d out of order or beyond size %d", i, size)
		}
		ids = compact.RangeNodes(begin, i, ids)
		begin = i + 1
	}
	return compact.RangeNodes(begin, size, ids), nil
}

// provePage returns the page proof of the entries at idx in the tree of
// the given size: the hashes, concatenated.
func provePage(r tlog.HashReader, size uint64, idx []uint64) ([]byte, error) {
	ids, err := pageProofNodes(size, idx)
	if err != nil {
		return nil, err
	}
	stored := make([]int64, len(ids))
	for j, id := range ids {
		stored[j] = tlog.StoredHashIndex(int(id.Level), int64(id.Index))
	}
	hs, err := r.ReadHashes(stored)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(ids) {
		return nil, fmt.Errorf("page proof: read %d hashes, want %d", len(hs), len(ids))
	}
	out := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out, nil
}

// CheckFeedPage verifies a page of a tenant's feed proved by one page
// proof (Feed.PageProof) against cp: the entries are the tenant's next
// ones, wantSeq, wantSeq+1, … with no gap, each body names the tenant and
// its sequence number, their indexes increase, and the leaves their bodies
// and salts commit to, at those indexes, with the proof's hashes rebuild
// cp's root. It checks everything [CheckFeedEntry] checks for each entry;
// a page that fails is refused whole.
func CheckFeedPage(cp *Checkpoint, es []FeedEntry, proof []byte, tenant string, wantSeq uint64) error {
	if len(es) == 0 {
		if len(proof) != 0 {
			return fmt.Errorf("%w: a page proof for no entries", ErrBadProof)
		}
		return nil
	}
	if len(proof)%tlog.HashSize != 0 {
		return fmt.Errorf("%w: page proof of %d bytes", ErrBadProof, len(proof))
	}
	rf := &compact.RangeFactory{Hash: nodeHash}
	rng := rf.NewEmptyRange(0)
	// gap appends the proof's next hashes as the compact range of
	// [begin, end).
	gap := func(begin, end uint64) error {
		n := compact.RangeSize(begin, end)
		if n*tlog.HashSize > len(proof) {
			return fmt.Errorf("%w: page proof too short", ErrBadProof)
		}
		hs := make([][]byte, n)
		for j := range hs {
			hs[j], proof = proof[:tlog.HashSize:tlog.HashSize], proof[tlog.HashSize:]
		}
		g, err := rf.NewRange(begin, end, hs)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadProof, err)
		}
		return rng.AppendRange(g, nil)
	}
	for k, e := range es {
		seq := wantSeq + uint64(k)
		if e.TenantSeq != seq {
			return fmt.Errorf("%w: expected tenant_seq %d, got %d (index %d)", ErrGap, seq, e.TenantSeq, e.Index)
		}
		if err := checkFeedBody(e, tenant); err != nil {
			return err
		}
		if e.Index >= cp.Size {
			return fmt.Errorf("%w: index %d is beyond checkpoint size %d", ErrBadProof, e.Index, cp.Size)
		}
		if e.Index < rng.End() {
			return fmt.Errorf("%w: entry index %d not after the previous entry's", ErrBadProof, e.Index)
		}
		leaf, err := LeafOf(e.Body, e.Salt)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrBadProof, e.Index, err)
		}
		if err := gap(rng.End(), e.Index); err != nil {
			return err
		}
		h := tlog.RecordHash(leaf)
		if err := rng.Append(h[:], nil); err != nil {
			return fmt.Errorf("%w: %v", ErrBadProof, err)
		}
	}
	if err := gap(rng.End(), cp.Size); err != nil {
		return err
	}
	if len(proof) != 0 {
		return fmt.Errorf("%w: page proof has %d bytes too many", ErrBadProof, len(proof))
	}
	root, err := rng.GetRootHash(nil)
	if err != nil || len(root) != tlog.HashSize || tlog.Hash(root) != cp.Root {
		return fmt.Errorf("%w: the page of entries %d…%d does not rebuild the root of checkpoint size %d", ErrBadProof, es[0].Index, es[len(es)-1].Index, cp.Size)
	}
	return nil
}

// nodeHash is RFC 6962's interior hash for compact ranges
// (tlog.NodeHash, without a hasher allocated per node).
func nodeHash(l, r []byte) []byte {
	h := tlog.NodeHash(tlog.Hash(l), tlog.Hash(r))
	return h[:]
}

// checkFeedBody checks that e's body names the tenant and e's sequence
// number. It decodes only the fields it needs ([decodeLeafKeys]: the
// same rules and result as a decode into [Leaf]).
func checkFeedBody(e FeedEntry, tenant string) error {
	var l leafKeys
	if err := decodeLeafKeys(e.Body, &l); err != nil {
		return fmt.Errorf("entry %d: body is not valid JSON", e.Index)
	}
	if l.Tenant != tenant || l.TenantSeq != e.TenantSeq {
		return fmt.Errorf("entry %d: body says tenant %q seq %d, feed says %q seq %d", e.Index, l.Tenant, l.TenantSeq, tenant, e.TenantSeq)
	}
	return nil
}

// AppendJSON appends f's JSON encoding to b: the same document
// encoding/json makes of f (field names, base64 for bytes), written
// directly. Bodies are written as stored — the bytes their leaves commit
// to — where encoding/json would re-scan and compact each one; a page is
// most of a feed's server CPU otherwise. b grows once, to the page's
// size ([Feed.jsonSize]).
func (f *Feed) AppendJSON(b []byte) []byte {
	b = slices.Grow(b, f.jsonSize())
	b = append(b, `{"checkpoint":`...)
	b = appendBase64(b, f.Checkpoint)
	b = append(b, `,"entries":[`...)
	for i, e := range f.Entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"tenant_seq":`...)
		b = strconv.AppendUint(b, e.TenantSeq, 10)
		b = append(b, `,"index":`...)
		b = strconv.AppendUint(b, e.Index, 10)
		b = append(b, `,"body":`...)
		if len(e.Body) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, e.Body...)
		}
		if len(e.Salt) > 0 {
			b = append(b, `,"salt":`...)
			b = appendBase64(b, e.Salt)
		}
		if e.Proof == nil {
			b = append(b, `,"proof":null`...)
		} else {
			b = append(b, `,"proof":[`...)
			for j, h := range e.Proof {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendBase64(b, h[:])
			}
			b = append(b, ']')
		}
		if e.Shared != 0 {
			b = append(b, `,"shared":`...)
			b = strconv.AppendInt(b, int64(e.Shared), 10)
		}
		b = append(b, '}')
	}
	b = append(b, `],"more":`...)
	b = strconv.AppendBool(b, f.More)
	if f.PageProof != nil {
		b = append(b, `,"page_proof":`...)
		b = appendBase64(b, f.PageProof)
	}
	return append(b, '}')
}

// jsonSize is the length of AppendJSON's encoding of f, or a little more
// (base64 is 4 bytes for every 3, rounded up; each entry's names and
// numbers take at most 160 bytes).
func (f *Feed) jsonSize() int {
	b64 := func(n int) int { return (n+2)/3*4 + 2 }
	n := 64 + b64(len(f.Checkpoint)) + b64(len(f.PageProof))
	for _, e := range f.Entries {
		n += 160 + len(e.Body) + b64(len(e.Salt)) + len(e.Proof)*(b64(32)+1)
	}
	return n
}

func appendBase64(b, data []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, '"')
}

// pageProof is the page proof of es in the tree of the given size.
func (l *Log) pageProof(ctx context.Context, size uint64, es []FeedEntry) ([]byte, error) {
	idx := make([]uint64, len(es))
	for i := range es {
		idx[i] = es[i].Index
	}
	return provePage(newProofReader(ctx, l.r), size, idx)
}
