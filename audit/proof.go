package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
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
// keeps them, per tile, and the tiles it read. Stored hashes never change
// (each names a complete subtree), so a kept one stays right. Both caches
// are bounded and start over when full: a report proves its entries in
// index order, so what it needs next is near what it read last.
//
// The upper hashes are kept as one array per tile, not one map entry per
// hash: in a 10M-entry log a report of 100 000 entries touches nearly
// every bottom tile, and inserting each of their 254 upper hashes in a map
// cost as much as computing them (docs/benchmarks.md (q)).
//
// A report at 10M entries rebuilds and reads about 39 000 tiles, so the
// reader also recycles what it drops: the upper hashes of the tiles it
// evicts, the buffer the rebuild hashes into, and the bottom tiles a
// batch loaded (about 16 KiB per tile, 640 MB of garbage per report
// otherwise, whose collection cost more than the reads; docs/benchmarks.md
// (ae)).
type proofReader struct {
	ctx    context.Context
	q      *sql.DB
	tiles  *tileCache
	stored tlog.HashReader
	upper  map[tileKey]*upperHashes
	spare  []*upperHashes // evicted from upper, to be reused
	slab   []byte         // the rebuild's hash buffer, reused per tile
	bufs   [][]byte       // free buffers for the tiles load reads
	inUse  [][]byte       // the buffers of the tiles of the current batch
}

// upperHashes are a tile's hashes above its bottom row: at[l][i] is the
// i-th node of the tile at height l (1 … tileHeight-1) within it; n[l]
// says how many of them the rebuild computed (a partial tile has fewer).
type upperHashes struct {
	at [tileHeight][]tlog.Hash
	n  [tileHeight]int
}

func newProofReader(ctx context.Context, q *sql.DB) *proofReader {
	c := newTileCache()
	return &proofReader{ctx: ctx, q: q, tiles: c, stored: c.reader(ctx, q, nil), upper: map[tileKey]*upperHashes{}}
}

func (p *proofReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	if len(p.tiles.tiles) > proofReaderTiles {
		clear(p.tiles.tiles)
	}
	out := make([]tlog.Hash, len(indexes))
	var miss []int64
	var at []int
	for i, x := range indexes {
		if level, n := tlog.SplitStoredHashIndex(x); level%tileHeight != 0 {
			h := level % tileHeight
			k := tileKey{level / tileHeight, n >> (tileHeight - h)}
			u, ok := p.upper[k]
			if !ok {
				if (len(p.upper)+1)*(1<<tileHeight-2) > proofReaderHashes {
					for _, u := range p.upper {
						p.spare = append(p.spare, u)
					}
					clear(p.upper)
				}
				var err error
				if u, err = p.rebuild(k); err != nil {
					return nil, err
				}
				p.upper[k] = u
			}
			if j := int(n & (1<<(tileHeight-h) - 1)); j < u.n[h] {
				out[i] = u.at[h][j]
				continue
			}
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

// rebuild computes every hash of tile k above its bottom row that the
// stored part of the tile determines (complete subtrees only).
func (p *proofReader) rebuild(k tileKey) (*upperHashes, error) {
	data, err := p.tiles.get(p.ctx, p.q, k)
	if err != nil {
		return nil, err
	}
	var u *upperHashes
	if n := len(p.spare); n > 0 {
		u, p.spare = p.spare[n-1], p.spare[:n-1]
		u.n = [tileHeight]int{}
	} else {
		u = new(upperHashes)
		for h := 1; h < tileHeight; h++ {
			u.at[h] = make([]tlog.Hash, 1<<(tileHeight-h))
		}
	}
	// tlog.NodeHash is RFC 6962's interior hash, as rfc6962.HashChildren,
	// without a hasher allocated per node; the range's hashes are cut from
	// one buffer (a tile has 255 interior nodes), not allocated one by
	// one — 10M small allocations in a report at 10M entries. The buffer
	// is the reader's, reused for every tile: the range, and so every
	// slice of it, is dropped when this returns, and the visitor copies
	// the hashes it keeps.
	if p.slab == nil {
		p.slab = make([]byte, 0, (1<<tileHeight)*tlog.HashSize)
	}
	slab := p.slab[:0]
	rf := compact.RangeFactory{Hash: func(l, r []byte) []byte {
		h := tlog.NodeHash(tlog.Hash(l), tlog.Hash(r))
		if len(slab)+tlog.HashSize > cap(slab) {
			slab = make([]byte, 0, (1<<tileHeight)*tlog.HashSize)
		}
		slab = append(slab, h[:]...)
		return slab[len(slab)-tlog.HashSize : len(slab) : len(slab)]
	}}
	// The row's hashes are the range's leaves, numbered as the nodes of
	// their level in the whole tree; a node the range computes at height
	// h is then the tree's node at level k.level*tileHeight+h, same
	// index, the (index - first)-th of its height in the tile.
	rng := rf.NewEmptyRange(uint64(k.n) << tileHeight)
	visit := func(id compact.NodeID, hash []byte) {
		h := int(id.Level)
		if h == 0 || h >= tileHeight {
			return
		}
		j := int(id.Index - uint64(k.n)<<(tileHeight-h))
		u.at[h][j] = tlog.Hash(hash)
		u.n[h] = max(u.n[h], j+1)
	}
	for i := 0; i+tlog.HashSize <= len(data); i += tlog.HashSize {
		if err := rng.Append(data[i:i+tlog.HashSize], visit); err != nil {
			return nil, fmt.Errorf("tile %d/%d: %w", k.level, k.n, err)
		}
	}
	return u, nil
}

// proveWorkers bounds how many goroutines [Log.ProveAll] proves on (at
// most GOMAXPROCS); proveChunk is the fewest entries worth a goroutine of
// its own. Variables so that tests can change them.
var (
	proveWorkers = 4
	proveChunk   = 512
)

// ProveAll returns the inclusion proofs of the entries at indexes in the
// tree of size, proofs[i] proving indexes[i] — what [Log.Prover] gives,
// for many entries at once, as a blast-radius report needs. indexes
// should ascend (a report's entries do); any order gives the same proofs,
// only more slowly.
//
// Three things make it faster than calling a Prover per entry
// (docs/benchmarks.md (x)): the indexes are split into contiguous runs
// proven in parallel, each run by its own [proofReader] (they share
// nothing but the read pool); each reader loads the tiles a run of its
// entries needs with one query per run of nearby tiles instead of one
// per tile (on PostgreSQL a round trip each: about 39 000 of them for a
// principal at 1 % of a 10M-entry log); and, as with a Prover, a tile's
// upper hashes are rebuilt once for all of its entries. The proofs are
// tlog.ProveRecord's, from the same stored tiles.
func (l *Log) ProveAll(ctx context.Context, size uint64, indexes []uint64) ([]tlog.RecordProof, error) {
	if err := l.reach(ctx, size); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if size > l.Size() {
		return nil, custos.Errorf(custos.EINVALID, "size must be at most the log size %d", l.Size())
	}
	for _, i := range indexes {
		if i >= size {
			return nil, custos.Errorf(custos.EINVALID, "index must be below size")
		}
	}
	out := make([]tlog.RecordProof, len(indexes))
	workers := min(runtime.GOMAXPROCS(0), proveWorkers, max(len(indexes)/proveChunk, 1))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := len(indexes)*w/workers, len(indexes)*(w+1)/workers
		wg.Go(func() {
			errs[w] = l.proveRun(ctx, size, indexes[lo:hi], out[lo:hi])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return out, nil
}

// proveRun proves indexes into out through one proofReader, loading the
// bottom tiles of each batch of them before proving it. A batch needs at
// most half the reader's tile bound, so the loaded tiles stay cached
// while the batch is proven.
func (l *Log) proveRun(ctx context.Context, size uint64, indexes []uint64, out []tlog.RecordProof) error {
	p := newProofReader(ctx, l.r)
	limit := max(proofReaderTiles/2, 1)
	for len(indexes) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The batch: as many indexes as fall in limit bottom tiles.
		var tiles []int64
		n := 0
		for ; n < len(indexes); n++ {
			t := int64(indexes[n] >> tileHeight)
			if len(tiles) > 0 && tiles[len(tiles)-1] == t {
				continue
			}
			if len(tiles) == limit {
				break
			}
			tiles = append(tiles, t)
		}
		if err := p.load(0, tiles); err != nil {
			return err
		}
		for i := range n {
			pr, err := tlog.ProveRecord(int64(size), int64(indexes[i]), p)
			if err != nil {
				return err
			}
			out[i] = pr
		}
		indexes, out = indexes[n:], out[n:]
	}
	return nil
}

// load reads the stored tiles ns of one level into the reader's cache,
// in place of what it held (a batch's entries ascend past the tiles of
// the last one), one query per run of tiles that lie close together: a
// run may span a few tiles no entry needs, cheaper to skip over than to
// query around. A tile no query returns is left to the reader, which
// reads it alone or says it is missing.
func (p *proofReader) load(level int, ns []int64) error {
	ns = slices.Compact(slices.Sorted(slices.Values(ns)))
	// The tiles of the last batch are done with: rebuild copied what it
	// keeps, and the stored reader copies the hashes it returns.
	p.bufs = append(p.bufs, p.inUse...)
	p.inUse = p.inUse[:0]
	clear(p.tiles.tiles)
	for len(ns) > 0 {
		j := 1
		for j < len(ns) && ns[j]-ns[0] < int64(2*(j+1)+8) {
			j++
		}
		run := ns[:j]
		ns = ns[j:]
		lo, hi := run[0], run[len(run)-1]
		rows, err := p.q.QueryContext(p.ctx, `SELECT idx, width, data FROM audit_tiles WHERE level = $1 AND idx >= $2 AND idx <= $3 ORDER BY idx`, level, lo, hi)
		if err != nil {
			return fmt.Errorf("read tiles %d/%d…%d: %w", level, lo, hi, err)
		}
		for rows.Next() {
			var n int64
			var width int
			var raw sql.RawBytes // copied below into a reused buffer
			if err := rows.Scan(&n, &width, &raw); err != nil {
				rows.Close()
				return fmt.Errorf("read tiles %d/%d…%d: %w", level, lo, hi, err)
			}
			if _, needed := slices.BinarySearch(run, n); !needed {
				continue
			}
			if len(raw) != width*tlog.HashSize || width < 1 || width > 1<<tileHeight {
				rows.Close()
				return fmt.Errorf("tile %d/%d is malformed", level, n)
			}
			var data []byte
			if k := len(p.bufs); k > 0 {
				data, p.bufs = p.bufs[k-1][:0], p.bufs[:k-1]
			} else {
				data = make([]byte, 0, (1<<tileHeight)*tlog.HashSize)
			}
			data = append(data, raw...)
			p.inUse = append(p.inUse, data)
			p.tiles.tiles[tileKey{level, n}] = data
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read tiles %d/%d…%d: %w", level, lo, hi, err)
		}
	}
	return nil
}
