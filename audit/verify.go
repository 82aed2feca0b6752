package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions tune [Verify].
type VerifyOptions struct {
	// Progress, if set, is called as entries are checked.
	Progress func(done, total uint64)
	// Checkpoint is an optional signed checkpoint held outside this
	// database (a tenant's, a witness's); the log must contain it.
	Checkpoint []byte
	// Trusted is the checkpoint a previous verification accepted (custos
	// log verify --state): the log must contain it too, which catches a
	// truncation, an older backup restored and a rewrite re-signed with the
	// log's key since then — none of which the stored checkpoints show.
	Trusted []byte
}

// VerifyReport describes a log that verified.
type VerifyReport struct {
	Size           uint64
	Root           tlog.Hash
	CheckpointSize uint64 // size of the latest signed checkpoint checked
	Checkpoints    int    // signed checkpoints checked
	Tenants        int    // tenants whose sequences were checked
	// Latest is the largest checkpoint checked (nil if none): what a
	// caller keeps as the next run's VerifyOptions.Trusted.
	Latest *Checkpoint
}

// VerifyError names the first entry at which the log is not what its
// checkpoints and tiles say.
type VerifyError struct {
	Index  uint64
	Reason string
}

func (e *VerifyError) Error() string { return fmt.Sprintf("entry %d: %s", e.Index, e.Reason) }

// Verify checks that every entry's body and salt open its commitment,
// then recomputes the whole tree from the commitments — with the
// transparency-dev/merkle compact range, in memory logarithmic in the
// log's size — and checks it against every stored tile, every signed
// checkpoint (signatures verified with v) and opts.Checkpoint. It also
// checks that indexes and each tenant's sequence are gap-free. Integrity
// failures are a *[VerifyError] naming the first bad index.
func Verify(ctx context.Context, read *sql.DB, v note.Verifier, opts VerifyOptions) (*VerifyReport, error) {
	var total sql.NullInt64
	if err := read.QueryRowContext(ctx, `SELECT MAX(idx) + 1 FROM audit_leaves`).Scan(&total); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	cps, err := loadCheckpoints(ctx, read, v)
	if err != nil {
		return nil, err
	}
	held := map[*Checkpoint]string{} // checkpoints from outside, and what they are
	for _, h := range []struct {
		msg  []byte
		what string
	}{{opts.Checkpoint, "the external checkpoint"}, {opts.Trusted, "the checkpoint verified before"}} {
		if h.msg == nil {
			continue
		}
		cp, err := ParseCheckpoint(h.msg, v)
		if err != nil {
			return nil, fmt.Errorf("verify: %s: %w", h.what, err)
		}
		held[cp] = h.what
		cps = insertCheckpoint(cps, cp)
	}

	vf := &verifier{ctx: ctx, read: read, tiles: map[int]*tileState{}, seqs: map[string]uint64{}}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	rep := &VerifyReport{}

	// The empty tree's checkpoints come first.
	for len(cps) > 0 && cps[0].Size == 0 {
		if cps[0].Root != emptyRoot() {
			return nil, &VerifyError{Index: 0, Reason: "checkpoint of the empty tree has a wrong root"}
		}
		rep.Checkpoints++
		rep.Latest = cps[0]
		cps = cps[1:]
	}

	rows, err := read.QueryContext(ctx, `SELECT `+leafRowColumns+` FROM audit_leaves ORDER BY idx`)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	var n uint64
	committed := false // a committed entry was seen: no legacy one may follow
	for rows.Next() {
		idx, tenant, seq, s, err := scanLeafRow(rows)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if uint64(idx) != n {
			return nil, &VerifyError{Index: n, Reason: "entry is missing"}
		}
		s.Index = n
		if err := s.check(); err != nil {
			return nil, err
		}
		if s.Salt != nil {
			committed = true
		} else if committed {
			return nil, &VerifyError{Index: n, Reason: "legacy (uncommitted) entry after committed ones"}
		}
		if err := vf.leafFields(n, tenant, seq, s.Data); err != nil {
			return nil, err
		}
		h := tlog.RecordHash(s.Leaf)
		if err := rng.Append(h[:], vf.visit); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if vf.err != nil {
			return nil, vf.err
		}
		n++
		for len(cps) > 0 && cps[0].Size == n {
			if err := checkRoot(rng, cps[0], rep.CheckpointSize); err != nil {
				if what, ok := held[cps[0]]; ok {
					return nil, &VerifyError{Index: rep.CheckpointSize, Reason: fmt.Sprintf("the log's first %d entries are not the tree of %s: history was rewritten (and re-signed, if the stored checkpoints agree with it)", n, what)}
				}
				return nil, err
			}
			rep.CheckpointSize = n
			rep.Checkpoints++
			rep.Latest = cps[0]
			cps = cps[1:]
		}
		if opts.Progress != nil && (n%4096 == 0) {
			opts.Progress(n, uint64(total.Int64))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, cp := range cps {
		if what, ok := held[cp]; ok {
			return nil, &VerifyError{Index: n, Reason: fmt.Sprintf("log truncated or rolled back: it has %d entries, but %s is of size %d (an older backup restored, or entries removed)", n, what, cp.Size)}
		}
	}
	if len(cps) > 0 {
		return nil, &VerifyError{Index: n, Reason: fmt.Sprintf("log truncated: it has %d entries, but a checkpoint was signed at size %d", n, cps[len(cps)-1].Size)}
	}
	if err := vf.finishTiles(n); err != nil {
		return nil, err
	}
	if n > 0 {
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		copy(rep.Root[:], root)
	} else {
		rep.Root = emptyRoot()
	}
	if opts.Progress != nil {
		opts.Progress(n, n)
	}
	// The index by principal, key and source is derived from the bodies.
	if err := VerifyIndex(ctx, read); err != nil {
		return nil, err
	}
	rep.Size, rep.Tenants = n, len(vf.seqs)
	return rep, nil
}

func checkRoot(rng *compact.Range, cp *Checkpoint, prev uint64) error {
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if !bytes.Equal(root, cp.Root[:]) {
		return &VerifyError{Index: prev, Reason: fmt.Sprintf("entries %d to %d do not match the checkpoint signed at size %d", prev, cp.Size-1, cp.Size)}
	}
	return nil
}

// loadCheckpoints reads and verifies every stored checkpoint, in size order.
func loadCheckpoints(ctx context.Context, read *sql.DB, v note.Verifier) ([]*Checkpoint, error) {
	rows, err := read.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	var out []*Checkpoint
	for rows.Next() {
		var size int64
		var msg []byte
		if err := rows.Scan(&size, &msg); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		cp, err := ParseCheckpoint(msg, v)
		if err != nil {
			return nil, &VerifyError{Index: uint64(size), Reason: "stored checkpoint does not verify: " + err.Error()}
		}
		if cp.Size != uint64(size) {
			return nil, &VerifyError{Index: uint64(size), Reason: "stored checkpoint row does not match its note"}
		}
		out = append(out, cp)
	}
	return out, rows.Err()
}

func insertCheckpoint(cps []*Checkpoint, cp *Checkpoint) []*Checkpoint {
	for i, c := range cps {
		if c.Size >= cp.Size {
			return append(cps[:i], append([]*Checkpoint{cp}, cps[i:]...)...)
		}
	}
	return append(cps, cp)
}

// verifier holds Verify's streaming state.
type verifier struct {
	ctx   context.Context
	read  *sql.DB
	tiles map[int]*tileState // by tile level
	seqs  map[string]uint64
	err   error
}

// tileState is the stored tile being compared at one tile level.
type tileState struct {
	n    int64
	data []byte // nil when the stored tile is missing
}

func (vf *verifier) leafFields(n uint64, tenant sql.NullString, seq sql.NullInt64, data []byte) error {
	var l struct {
		Tenant    string `json:"tenant"`
		TenantSeq uint64 `json:"tenant_seq"`
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return &VerifyError{Index: n, Reason: "leaf is not JSON"}
	}
	if l.Tenant != tenant.String || l.TenantSeq != uint64(seq.Int64) {
		return &VerifyError{Index: n, Reason: "leaf row's tenant columns do not match its data"}
	}
	if l.Tenant == "" {
		return nil
	}
	if want := vf.seqs[l.Tenant] + 1; l.TenantSeq != want {
		return &VerifyError{Index: n, Reason: fmt.Sprintf("tenant sequence gap: tenant_seq %d where %d was due", l.TenantSeq, want)}
	}
	vf.seqs[l.Tenant] = l.TenantSeq
	return nil
}

// visit compares every node the compact range computes at a tiled level
// (multiples of 8) with the stored tile holding it.
func (vf *verifier) visit(id compact.NodeID, hash []byte) {
	if vf.err != nil || id.Level%tileHeight != 0 {
		return
	}
	level := int(id.Level / tileHeight)
	tn := int64(id.Index >> tileHeight)
	pos := int(id.Index & (1<<tileHeight - 1))
	first := id.Index << id.Level // first entry under this node
	ts, err := vf.tile(level, tn)
	if err != nil {
		vf.err = err
		return
	}
	if ts.data == nil {
		vf.err = &VerifyError{Index: first, Reason: fmt.Sprintf("tile %d/%d is missing", level, tn)}
		return
	}
	if len(ts.data) < (pos+1)*tlog.HashSize {
		vf.err = &VerifyError{Index: first, Reason: fmt.Sprintf("tile %d/%d is too short", level, tn)}
		return
	}
	if !bytes.Equal(ts.data[pos*tlog.HashSize:(pos+1)*tlog.HashSize], hash) {
		if level == 0 {
			vf.err = &VerifyError{Index: first, Reason: "leaf hash does not match the stored tile (leaf or tile altered)"}
		} else {
			vf.err = &VerifyError{Index: first, Reason: fmt.Sprintf("subtree hash does not match stored tile %d/%d", level, tn)}
		}
	}
}

func (vf *verifier) tile(level int, n int64) (*tileState, error) {
	ts := vf.tiles[level]
	if ts != nil && ts.n == n {
		return ts, nil
	}
	if ts != nil && ts.data != nil && len(ts.data) != (1<<tileHeight)*tlog.HashSize {
		return nil, &VerifyError{Index: uint64(ts.n) << (tileHeight * (level + 1)), Reason: fmt.Sprintf("tile %d/%d is partial but not the last", level, ts.n)}
	}
	ts = &tileState{n: n}
	var width int
	err := vf.read.QueryRowContext(vf.ctx, `SELECT width, data FROM audit_tiles WHERE level = $1 AND idx = $2`, level, n).Scan(&width, &ts.data)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("verify: read tile: %w", err)
	}
	if err == nil && len(ts.data) != width*tlog.HashSize {
		return nil, &VerifyError{Index: uint64(n) << (tileHeight * (level + 1)), Reason: fmt.Sprintf("tile %d/%d width does not match its data", level, n)}
	}
	vf.tiles[level] = ts
	return ts, nil
}

// finishTiles checks that the last tile of every level has exactly the
// width a tree of n entries gives it, and that no tile lies beyond.
func (vf *verifier) finishTiles(n uint64) error {
	for level := 0; n>>(tileHeight*level) > 0; level++ {
		hashes := n >> (tileHeight * level) // stored hashes at this tile level
		last := int64((hashes - 1) >> tileHeight)
		want := int(hashes - uint64(last)<<tileHeight)
		ts, err := vf.tile(level, last)
		if err != nil {
			return err
		}
		first := uint64(last) << (tileHeight * (level + 1))
		if ts.data == nil {
			return &VerifyError{Index: first, Reason: fmt.Sprintf("tile %d/%d is missing", level, last)}
		}
		if len(ts.data) != want*tlog.HashSize {
			return &VerifyError{Index: first, Reason: fmt.Sprintf("tile %d/%d has width %d, want %d", level, last, len(ts.data)/tlog.HashSize, want)}
		}
	}
	var extra int
	if err := vf.read.QueryRowContext(vf.ctx, `SELECT count(*) FROM audit_tiles WHERE level = 0 AND idx > $1`, int64(n-1)>>tileHeight).Scan(&extra); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if n > 0 && extra > 0 {
		return &VerifyError{Index: n, Reason: "tiles exist beyond the last entry (entries removed)"}
	}
	return nil
}

// leafRowColumns are the columns of audit_leaves the verifiers read, in
// the order [scanLeafRow] takes them.
const leafRowColumns = `idx, tenant_id, tenant_seq, data, salt, leaf`

// scanLeafRow reads one row of leafRowColumns: the entry and the tenant
// columns stored beside it, which must match its body.
func scanLeafRow(rows *sql.Rows) (idx int64, tenant sql.NullString, seq sql.NullInt64, s Stored, err error) {
	err = rows.Scan(&idx, &tenant, &seq, &s.Data, &s.Salt, &s.Leaf)
	return idx, tenant, seq, s, err
}
