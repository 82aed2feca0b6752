package audit

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
)

// tileHeight is the C2SP tlog-tiles height: 2^8 = 256 hashes per tile.
const tileHeight = 8

type tileKey struct {
	level int
	n     int64
}

// tileCache holds the tiles the sequencer touches — in practice the right
// edge of the tree at each level — so a batch reads nothing it wrote before.
// It is owned by the sequencer goroutine (and by load, which runs before
// or instead of it).
type tileCache struct {
	tiles map[tileKey][]byte
	// staged holds tiles written by the open transaction; they join tiles
	// only when it commits.
	staged map[tileKey][]byte
}

func newTileCache() *tileCache {
	return &tileCache{tiles: map[tileKey][]byte{}, staged: map[tileKey][]byte{}}
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// get returns the stored tile (level, n), from the cache or q.
func (c *tileCache) get(ctx context.Context, q querier, k tileKey) ([]byte, error) {
	if d, ok := c.staged[k]; ok {
		return d, nil
	}
	if d, ok := c.tiles[k]; ok {
		return d, nil
	}
	d, err := readTile(ctx, q, k)
	if err != nil {
		return nil, err
	}
	c.tiles[k] = d
	return d, nil
}

// readTile returns tile (level, n) as stored, or, for the partial tile
// at the right edge of level 0, as derived from the leaves it hashes.
//
// Only full tiles are stored at level 0: the partial one there is what
// every commit would otherwise rewrite whole (up to 8 KiB, a fifth of the
// disk bytes of a lone append, docs/benchmarks.md (au)). Its hashes are
// the record hashes of the last < 256 leaves, which are in audit_leaves
// anyway. A tile of a higher level changes once per 256 entries and is
// stored partial. A full level-0 tile is never derived: missing, it is
// missing (errTileMissing), as a tile of any level is.
func readTile(ctx context.Context, q querier, k tileKey) ([]byte, error) {
	data, err := storedTile(ctx, q, k)
	if k.level != 0 || !errors.Is(err, errTileMissing) {
		return data, err
	}
	data, err = edgeTile(ctx, q, k.n)
	if err != nil || len(data) < (1<<tileHeight)*tlog.HashSize {
		return data, err
	}
	// 256 leaves: a full tile, stored in the commit of its last leaf —
	// perhaps since the first query.
	return storedTile(ctx, q, k)
}

// Tiles that are not there, or not whole: not a database's passing error.
var (
	errTileMissing   = errors.New("tile is missing")
	errTileMalformed = errors.New("tile is malformed")
)

func storedTile(ctx context.Context, q querier, k tileKey) ([]byte, error) {
	var width int
	var data []byte
	err := q.QueryRowContext(ctx, `SELECT width, data FROM audit_tiles WHERE level = $1 AND idx = $2`, k.level, k.n).Scan(&width, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("tile %d/%d: %w", k.level, k.n, errTileMissing)
	} else if err != nil {
		return nil, fmt.Errorf("read tile %d/%d: %w", k.level, k.n, err)
	}
	if len(data) != width*tlog.HashSize || width < 1 || width > 1<<tileHeight {
		return nil, fmt.Errorf("tile %d/%d: %w", k.level, k.n, errTileMalformed)
	}
	return data, nil
}

// edgeTile derives level-0 tile n from its leaves: the record hash of
// each leaf from n·256 on, as far as they run without a gap (at most 256).
// No leaf there: the tile is missing.
func edgeTile(ctx context.Context, q querier, n int64) ([]byte, error) {
	start := n << tileHeight
	rows, err := q.QueryContext(ctx, `SELECT idx, COALESCE(leaf, data) FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx`, start, start+1<<tileHeight)
	if err != nil {
		return nil, fmt.Errorf("read tile 0/%d: %w", n, err)
	}
	defer rows.Close()
	var out []byte
	next := start
	for rows.Next() {
		var idx int64
		var leaf sql.RawBytes
		if err := rows.Scan(&idx, &leaf); err != nil {
			return nil, fmt.Errorf("read tile 0/%d: %w", n, err)
		}
		if idx != next {
			break
		}
		h := tlog.RecordHash(leaf)
		out = append(out, h[:]...)
		next++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tile 0/%d: %w", n, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tile 0/%d: %w", n, errTileMissing)
	}
	return out, nil
}

// reader returns a tlog.HashReader over fresh hashes (not yet in any
// tile) and stored tiles.
func (c *tileCache) reader(ctx context.Context, q querier, fresh map[int64]tlog.Hash) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			if h, ok := fresh[idx]; ok {
				out[i] = h
				continue
			}
			t := tlog.TileForIndex(tileHeight, idx)
			data, err := c.get(ctx, q, tileKey{t.L, t.N})
			if err != nil {
				return nil, err
			}
			if len(data) < t.W*tlog.HashSize && t.L == 0 {
				// A published edge (Log.storedReader) the tree has grown
				// past, on a node that no longer sequences: read it.
				delete(c.tiles, tileKey{t.L, t.N})
				if data, err = c.get(ctx, q, tileKey{t.L, t.N}); err != nil {
					return nil, err
				}
			}
			if len(data) < t.W*tlog.HashSize {
				return nil, fmt.Errorf("tile %d/%d too narrow for hash %d", t.L, t.N, idx)
			}
			t.W = len(data) / tlog.HashSize
			if out[i], err = tlog.HashFromTile(t, data, idx); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// extend adds the records datas (leaves oldSize, oldSize+1, …) to the
// tree inside tx: it computes their stored hashes, writes every new or
// grown tile, and returns the new root. All hashing is tlog's.
func (c *tileCache) extend(ctx context.Context, tx *sql.Tx, oldSize uint64, datas [][]byte) (tlog.Hash, error) {
	clear(c.staged)
	fresh := make(map[int64]tlog.Hash, 2*len(datas))
	r := c.reader(ctx, tx, fresh)
	for i, data := range datas {
		n := int64(oldSize) + int64(i)
		hashes, err := tlog.StoredHashes(n, data, r)
		if err != nil {
			return tlog.Hash{}, fmt.Errorf("stored hashes of %d: %w", n, err)
		}
		base := tlog.StoredHashIndex(0, n)
		for j, h := range hashes {
			fresh[base+int64(j)] = h
		}
	}
	newSize := int64(oldSize) + int64(len(datas))
	for _, t := range tlog.NewTiles(tileHeight, int64(oldSize), newSize) {
		data, err := tlog.ReadTileData(t, r)
		if err != nil {
			return tlog.Hash{}, fmt.Errorf("tile %d/%d: %w", t.L, t.N, err)
		}
		if t.L == 0 && t.W < 1<<tileHeight { // derived from the leaves: see readTile
			c.staged[tileKey{t.L, t.N}] = data
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_tiles (level, idx, width, data) VALUES ($1, $2, $3, $4)
			ON CONFLICT (level, idx) DO UPDATE SET width = excluded.width, data = excluded.data`, t.L, t.N, t.W, data); err != nil {
			return tlog.Hash{}, fmt.Errorf("write tile %d/%d: %w", t.L, t.N, err)
		}
		c.staged[tileKey{t.L, t.N}] = data
	}
	root, err := tlog.TreeHash(newSize, r)
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("tree hash: %w", err)
	}
	return root, nil
}

// committed publishes the staged tiles and evicts tiles the sequencer will
// not read again: only the last two tiles of each level can hold a hash
// that a future leaf's stored hashes or the root depend on.
func (c *tileCache) committed(size uint64) {
	for k, d := range c.staged {
		c.tiles[k] = d
	}
	clear(c.staged)
	if len(c.tiles) < 64 {
		return
	}
	for k := range c.tiles {
		frontier := int64(size) >> (tileHeight * (k.level + 1))
		if k.n+1 < frontier {
			delete(c.tiles, k)
		}
	}
}

// ReadTile returns the tlog-tiles hash tile (level, index) of the given
// width (1..256): a prefix of the stored tile, which only ever grows.
func (l *Log) ReadTile(ctx context.Context, level, index uint64, width int) ([]byte, error) {
	if width < 1 || width > 1<<tileHeight || level > 63 {
		return nil, custos.Errorf(custos.ENOTFOUND, "no such tile")
	}
	data, err := readTile(ctx, l.r, tileKey{int(level), int64(index)})
	if err != nil || len(data) < width*tlog.HashSize {
		return nil, custos.Errorf(custos.ENOTFOUND, "no such tile")
	}
	return data[:width*tlog.HashSize], nil
}

// ReadEntryBundle returns the tlog-tiles entry bundle index of the given
// width: each entry as a big-endian uint16 length and its leaf bytes.
// Leaves are commitments (see [Commit]), so a bundle tells its reader
// that entries exist and that they hash to the tree, and nothing of what
// they say — except legacy entries, written before commitments, whose
// leaf is their JSON body.
func (l *Log) ReadEntryBundle(ctx context.Context, index uint64, width int) ([]byte, error) {
	if width < 1 || width > 1<<tileHeight {
		return nil, custos.Errorf(custos.ENOTFOUND, "no such entry bundle")
	}
	start := index << tileHeight
	if err := l.reach(ctx, start+uint64(width)); err != nil {
		return nil, fmt.Errorf("read entry bundle: %w", err)
	}
	if start+uint64(width) > l.Size() {
		return nil, custos.Errorf(custos.ENOTFOUND, "no such entry bundle")
	}
	rows, err := l.r.QueryContext(ctx, `SELECT idx, COALESCE(leaf, data) FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(start), int64(start)+int64(width))
	if err != nil {
		return nil, fmt.Errorf("read entry bundle: %w", err)
	}
	defer rows.Close()
	var out []byte
	next := int64(start)
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return nil, fmt.Errorf("read entry bundle: %w", err)
		}
		if idx != next || len(data) > maxLeafBytes {
			return nil, fmt.Errorf("read entry bundle: entry %d is missing or malformed", next)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
		out = append(out, data...)
		next++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read entry bundle: %w", err)
	}
	if next != int64(start)+int64(width) {
		return nil, custos.Errorf(custos.ENOTFOUND, "no such entry bundle")
	}
	return out, nil
}

// storedReader reads hashes from the tiles in the read database.
// The right edge of level 0 comes from the sequencer's own hashes where
// this process's sequencer has them (see Log.edge).
func (l *Log) storedReader(ctx context.Context) tlog.HashReader {
	c := newTileCache()
	l.headMu.RLock()
	if l.edge != nil {
		c.tiles[tileKey{0, l.edgeN}] = l.edge
	}
	l.headMu.RUnlock()
	return c.reader(ctx, l.r, nil)
}

// InclusionProof proves that entry index is in the tree of the given size.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) (tlog.RecordProof, error) {
	if err := l.reach(ctx, size); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if size > l.Size() || index >= size {
		return nil, custos.Errorf(custos.EINVALID, "index must be below size, and size at most the log size %d", l.Size())
	}
	p, err := tlog.ProveRecord(int64(size), int64(index), l.storedReader(ctx))
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return p, nil
}

// ConsistencyProof proves that the tree of oldSize is a prefix of the tree
// of newSize.
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (tlog.TreeProof, error) {
	if err := l.reach(ctx, newSize); err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	if newSize > l.Size() || oldSize > newSize {
		return nil, custos.Errorf(custos.EINVALID, "sizes must satisfy from ≤ to ≤ %d", l.Size())
	}
	p, err := tlog.ProveTree(int64(newSize), int64(oldSize), l.storedReader(ctx))
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return p, nil
}

// TreeHash returns the root of the tree of the given size, from the
// stored tiles.
func (l *Log) TreeHash(ctx context.Context, size uint64) (tlog.Hash, error) {
	if err := l.reach(ctx, size); err != nil {
		return tlog.Hash{}, err
	}
	if size > l.Size() {
		return tlog.Hash{}, custos.Errorf(custos.EINVALID, "size exceeds the log size")
	}
	return tlog.TreeHash(int64(size), l.storedReader(ctx))
}
