package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// proofHeader is the first line of a C2SP tlog-proof.
const proofHeader = "c2sp.org/tlog-proof@v1"

// Proof is an offline proof that an entry is in the log: the C2SP
// tlog-proof format (https://c2sp.org/tlog-proof), with the entry itself
// carried in the "extra" line so that the file is self-contained. The
// entry travels as its [Opening] — body and salt, from which the verifier
// recomputes the leaf — so the proof shows what the entry says, not only
// that some commitment is in the tree.
type Proof struct {
	Entry      []byte // the entry's opening (the extra data)
	Index      uint64
	Hashes     tlog.RecordProof
	Checkpoint []byte // the signed checkpoint note
}

// Marshal encodes p in the tlog-proof text format.
func (p *Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(proofHeader + "\n")
	if p.Entry != nil {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Entry) + "\n")
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// maxProofBytes bounds a proof file: an entry bundle's largest entry, 63
// hashes and a checkpoint with many cosignatures.
const maxProofBytes = 128 << 10

// ParseProof decodes a tlog-proof. It checks the format only; [Proof.Verify]
// checks what it claims.
func ParseProof(b []byte) (*Proof, error) {
	if len(b) > maxProofBytes {
		return nil, errors.New("tlog-proof: too large")
	}
	head, cp, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return nil, errors.New("tlog-proof: no blank line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != proofHeader {
		return nil, fmt.Errorf("tlog-proof: first line must be %q", proofHeader)
	}
	lines = lines[1:]
	p := &Proof{Checkpoint: cp}
	if len(lines) > 0 {
		if rest, ok := strings.CutPrefix(lines[0], "extra "); ok {
			e, err := base64.StdEncoding.Strict().DecodeString(rest)
			if err != nil {
				return nil, errors.New("tlog-proof: malformed extra data")
			}
			p.Entry, lines = e, lines[1:]
		}
	}
	if len(lines) == 0 {
		return nil, errors.New("tlog-proof: missing index line")
	}
	rest, ok := strings.CutPrefix(lines[0], "index ")
	if !ok {
		return nil, errors.New("tlog-proof: missing index line")
	}
	idx, err := strconv.ParseUint(rest, 10, 63)
	if err != nil || strconv.FormatUint(idx, 10) != rest {
		return nil, errors.New("tlog-proof: malformed index")
	}
	p.Index = idx
	lines = lines[1:]
	if len(lines) > 63 {
		return nil, errors.New("tlog-proof: too many hashes")
	}
	for _, l := range lines {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return nil, errors.New("tlog-proof: malformed hash line")
		}
		var th tlog.Hash
		copy(th[:], h)
		p.Hashes = append(p.Hashes, th)
	}
	return p, nil
}

// Verify checks, with no server, that the checkpoint is signed by v and
// that the entry is in its tree at the index. It returns the checkpoint.
func (p *Proof) Verify(v note.Verifier) (*Checkpoint, error) {
	cp, err := ParseCheckpoint(p.Checkpoint, v)
	if err != nil {
		return nil, err
	}
	if p.Entry == nil {
		return nil, errors.New("tlog-proof: carries no entry (extra line) to check")
	}
	if p.Index >= cp.Size {
		return nil, fmt.Errorf("%w: index %d is beyond checkpoint size %d", ErrBadProof, p.Index, cp.Size)
	}
	body, salt, err := ParseOpening(p.Entry)
	if err != nil {
		return nil, fmt.Errorf("tlog-proof: %w", err)
	}
	leaf, err := LeafOf(body, salt)
	if err != nil {
		return nil, fmt.Errorf("tlog-proof: %w", err)
	}
	if err := tlog.CheckRecord(p.Hashes, int64(cp.Size), cp.Root, int64(p.Index), tlog.RecordHash(leaf)); err != nil {
		return nil, fmt.Errorf("%w: entry %d against checkpoint size %d", ErrBadProof, p.Index, cp.Size)
	}
	return cp, nil
}

// Body returns the entry's body (its JSON), or nil if the proof carries
// no well-formed entry.
func (p *Proof) Body() []byte {
	body, _, err := ParseOpening(p.Entry)
	if err != nil {
		return nil
	}
	return body
}

// Bounds of a [proofReader]'s caches: about 4 MiB of tiles and 1 MiB of
// hashes (those above the bottom rows of 128 tiles). Variables so that
// tests can make them tiny.
var (
	proofReaderTiles  = 512
	proofReaderHashes = 1 << 15
)

// proofReader is the tlog.HashReader behind a [Log.Prover]: it serves many
// inclusion proofs under one tree, as a blast-radius report asks for
// thousands. Those proofs share most of their hashes, and a hash above a
// tile's bottom row is not stored: tlog.HashFromTile rebuilds it from up
// to 128 of the tile's hashes each time it is read, so that rebuilding
// was most of a report's cost. This reader instead rebuilds all of a
// tile's upper hashes at once, the first time it needs one of them, with
// a transparency-dev/merkle compact range over the tile's row (as
// [Verify] does over the leaves) — 255 hashings per tile, at most — and
// keeps them, and the tiles it read. Stored hashes never change (each
// names a complete subtree), so a kept one stays right. Both caches are
// bounded and start over when full: a report proves its entries in index
// order, so what it needs next is near what it read last.
type proofReader struct {
	ctx    context.Context
	q      querier
	tiles  *tileCache
	stored tlog.HashReader
	hashes map[int64]tlog.Hash
}

func newProofReader(ctx context.Context, q querier) *proofReader {
	c := newTileCache()
	return &proofReader{ctx: ctx, q: q, tiles: c, stored: c.reader(ctx, q, nil), hashes: map[int64]tlog.Hash{}}
}

func (p *proofReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	if len(p.tiles.tiles) > proofReaderTiles {
		clear(p.tiles.tiles)
	}
	if len(p.hashes) > proofReaderHashes {
		clear(p.hashes)
	}
	out := make([]tlog.Hash, len(indexes))
	var miss []int64
	var at []int
	for i, x := range indexes {
		h, ok := p.hashes[x]
		if !ok {
			if level, _ := tlog.SplitStoredHashIndex(x); level%tileHeight != 0 {
				if err := p.rebuild(tlog.TileForIndex(tileHeight, x)); err != nil {
					return nil, err
				}
				h, ok = p.hashes[x]
			}
		}
		if ok {
			out[i] = h
			continue
		}
		// A hash of a tile's bottom row is read from the tile; so is one
		// the rebuild did not give (the stored reader says why).
		miss, at = append(miss, x), append(at, i)
	}
	if len(miss) == 0 {
		return out, nil
	}
	hs, err := p.stored.ReadHashes(miss)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(miss) {
		return nil, fmt.Errorf("read %d hashes, want %d", len(hs), len(miss))
	}
	for j, h := range hs {
		out[at[j]] = h
	}
	return out, nil
}

// rebuild computes and keeps every hash of tile t above its bottom row
// that the stored part of the tile determines (complete subtrees only).
func (p *proofReader) rebuild(t tlog.Tile) error {
	data, err := p.tiles.get(p.ctx, p.q, tileKey{t.L, t.N})
	if err != nil {
		return err
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	// The row's hashes are the range's leaves, numbered as the nodes of
	// their level in the whole tree; a node the range computes at height
	// h is then the tree's node at level t.L*tileHeight+h, same index.
	rng := rf.NewEmptyRange(uint64(t.N) << tileHeight)
	visit := func(id compact.NodeID, h []byte) {
		if id.Level == 0 || id.Level >= tileHeight {
			return
		}
		p.hashes[tlog.StoredHashIndex(t.L*tileHeight+int(id.Level), int64(id.Index))] = tlog.Hash(h)
	}
	for i := 0; i+tlog.HashSize <= len(data); i += tlog.HashSize {
		if err := rng.Append(data[i:i+tlog.HashSize], visit); err != nil {
			return fmt.Errorf("tile %d/%d: %w", t.L, t.N, err)
		}
	}
	return nil
}
