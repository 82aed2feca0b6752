package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"runtime"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions tune [Verify] and [VerifyFrom].
type VerifyOptions struct {
	// Progress, if set, is called as entries are checked.
	Progress func(done, total uint64)
	// Checkpoint is an optional signed checkpoint held outside this
	// database (a tenant's, a witness's); the log must contain it.
	Checkpoint []byte
	// Trusted is the checkpoint a previous verification accepted (custos
	// log verify --state, from a state file that holds only a checkpoint):
	// the log must contain it too, which catches a truncation, an older
	// backup restored and a rewrite re-signed with the log's key since
	// then — none of which the stored checkpoints show.
	Trusted []byte
	// Scrub is how many entries verified before [VerifyFrom] checks again
	// (their bodies against their commitments, their commitments against
	// the tree the state holds), from where the last run stopped, so that
	// run after run the whole log is rechecked a slice at a time.
	Scrub int
}

// VerifyState is what a verification keeps so that the next one checks
// only what is new ([VerifyFrom]): the latest signed checkpoint it
// verified and, at that checkpoint's size, the tree's compact range (the
// roots of its perfect subtrees, logarithmic in the size) and the last
// sequence number of every tenant and principal. The holder keeps it
// outside the log's database: it is the verifier's own memory of the log.
type VerifyState struct {
	Checkpoint []byte            `json:"checkpoint"`
	Range      []tlog.Hash       `json:"range"`
	Tenants    map[string]uint64 `json:"tenants,omitempty"`
	Actors     map[string]uint64 `json:"actors,omitempty"`
	Committed  bool              `json:"committed,omitempty"` // a committed entry was seen: no legacy one may follow
	Sequenced  bool              `json:"sequenced,omitempty"` // an indexed entry was seen: every later one is indexed
	Scrub      uint64            `json:"scrub,omitempty"`     // the next entry a scrub checks again
	// LogKeys are the log key transition statements followed (oldest
	// first, keychain.go): kept so that a log that later hides a rotation
	// still has its checkpoints checked by the key in force.
	LogKeys [][]byte `json:"log_keys,omitempty"`
}

// VerifyReport describes a log that verified.
type VerifyReport struct {
	Size           uint64
	Root           tlog.Hash
	From           uint64 // the first entry this run checked (0: a full run)
	CheckpointSize uint64 // size of the latest signed checkpoint checked
	Checkpoints    int    // signed checkpoints checked
	Tenants        int    // tenants whose sequences were checked
	Scrubbed       uint64 // entries verified before and checked again
	// Latest is the largest checkpoint checked (nil if none): what a
	// caller keeps as the next run's VerifyOptions.Trusted.
	Latest *Checkpoint
	// State is what the next run goes on from ([VerifyFrom]); nil if no
	// checkpoint was checked.
	State *VerifyState
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
// checks that indexes and each tenant's and principal's sequence are
// gap-free, and the index columns against the bodies. Integrity failures
// are a *[VerifyError] naming the first bad index.
func Verify(ctx context.Context, read *sql.DB, v note.Verifier, opts VerifyOptions) (*VerifyReport, error) {
	return verify(ctx, read, v, nil, opts)
}

// VerifyFrom verifies what was added since st, a state an earlier
// [Verify] or VerifyFrom returned, in time proportional to the new
// entries: the stored tree of the latest checkpoint must extend the state's
// (a consistency proof from the stored tiles), the new entries are checked
// as Verify checks them, and appended to the state's compact range to
// recompute the new checkpoints' roots. A log with fewer entries than the
// state is rolled back; a log whose tree no longer extends the state's
// was rewritten — both *[VerifyError]s. A state that does not hold
// together (its range is not its checkpoint's tree) is an error, not a
// pass: the caller runs a full [Verify] if it no longer trusts it.
func VerifyFrom(ctx context.Context, read *sql.DB, v note.Verifier, st *VerifyState, opts VerifyOptions) (*VerifyReport, error) {
	if st == nil {
		return nil, errors.New("verify: no state to go on from")
	}
	return verify(ctx, read, v, st, opts)
}

// rangeFactory hashes with tlog.NodeHash, RFC 6962's interior hash as
// rfc6962.DefaultHasher.HashChildren computes it, without a hasher and a
// slice allocated per node: a full verification hashes one node per entry
// on its one ordered goroutine.
var rangeFactory = compact.RangeFactory{Hash: nodeHash}

func verify(ctx context.Context, read *sql.DB, v note.Verifier, st *VerifyState, opts VerifyOptions) (*VerifyReport, error) {
	var total sql.NullInt64
	if err := read.QueryRowContext(ctx, `SELECT MAX(idx) + 1 FROM audit_leaves`).Scan(&total); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	// The log's keys: from the caller's trust root, through the
	// transitions a previous run followed, then those stored in the log.
	chain := NewKeyChain(v)
	if st != nil {
		if err := chain.FollowAll(st.LogKeys); err != nil {
			return nil, fmt.Errorf("verify: state: %w", err)
		}
	}
	msgs, err := ReadTransitions(ctx, read)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, m := range msgs {
		if _, err := chain.Follow(m); err != nil {
			return nil, &VerifyError{Reason: fmt.Sprintf("a stored log key transition does not follow from the keys trusted: %v", err)}
		}
	}
	v = chain
	vf := &verifier{ctx: ctx, read: read, tiles: map[int]*tileState{}, seqs: map[string]uint64{}, actors: map[string]uint64{}, chain: chain}
	rng := rangeFactory.NewEmptyRange(0)
	rep := &VerifyReport{}
	var base *Checkpoint // the state's checkpoint
	var n uint64         // entries checked so far (the next index)
	if st != nil {
		var err error
		if base, err = st.open(v); err != nil {
			return nil, err
		}
		if rng, err = rangeFactory.NewRange(0, base.Size, hashBytes(st.Range)); err != nil {
			return nil, fmt.Errorf("verify: state: %w", err)
		}
		if uint64(total.Int64) < base.Size {
			return nil, &VerifyError{Index: uint64(total.Int64), Reason: fmt.Sprintf("log truncated or rolled back: it has %d entries, but the checkpoint verified before is of size %d (an older backup restored, or entries removed)", total.Int64, base.Size)}
		}
		maps.Copy(vf.seqs, st.Tenants)
		maps.Copy(vf.actors, st.Actors)
		vf.committed, vf.sequenced = st.Committed, st.Sequenced
		n = base.Size
		rep.From, rep.Latest, rep.CheckpointSize, rep.State = n, base, n, st
	}
	cps, err := loadCheckpoints(ctx, read, v, n)
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
		if base != nil && cp.Size < base.Size {
			// Older than the state: its tree must be a prefix of the
			// state's, which the stored tiles prove.
			if err := checkConsistent(ctx, read, cp, base, h.what, "the checkpoint verified before"); err != nil {
				return nil, err
			}
			continue
		}
		held[cp] = h.what
		cps = insertCheckpoint(cps, cp)
	}
	if base != nil {
		// Checkpoints at the state's size must be the state's; the latest
		// must extend it.
		for len(cps) > 0 && cps[0].Size == base.Size {
			if cps[0].Root != base.Root {
				return nil, &VerifyError{Index: base.Size, Reason: fmt.Sprintf("a checkpoint of size %d with another root than the one verified before: history was rewritten (a fork, re-signed with the log's key)", base.Size)}
			}
			cps = cps[1:]
		}
		if len(cps) > 0 {
			if err := checkConsistent(ctx, read, base, cps[len(cps)-1], "the checkpoint verified before", "the latest checkpoint"); err != nil {
				return nil, err
			}
		}
	}
	// The state to keep is the one at the latest checkpoint's size.
	var keepAt uint64
	if len(cps) > 0 {
		keepAt = cps[len(cps)-1].Size
	}

	// The empty tree's checkpoints come first.
	for len(cps) > 0 && cps[0].Size == 0 {
		if cps[0].Root != emptyRoot() {
			return nil, &VerifyError{Index: 0, Reason: "checkpoint of the empty tree has a wrong root"}
		}
		rep.Checkpoints++
		rep.Latest = cps[0]
		rep.State = vf.state(rng, cps[0])
		cps = cps[1:]
	}

	// The entries to read: all those stored now, which covers every
	// checkpoint loaded above (a log appended to meanwhile has more than
	// total).
	var end sql.NullInt64
	if err := read.QueryRowContext(ctx, `SELECT MAX(idx) + 1 FROM audit_leaves`).Scan(&end); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	from, all := n, uint64(total.Int64)-n
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	batches := readChecked(pctx, read, n, uint64(max(end.Int64, total.Int64)))
	for b := range batches {
		<-b.done
		if b.err != nil {
			return nil, b.err
		}
		for i := range b.rows {
			r := &b.rows[i]
			if uint64(r.idx) != n {
				return nil, &VerifyError{Index: n, Reason: "entry is missing"}
			}
			if r.checkErr != nil {
				return nil, r.checkErr
			}
			if r.s.Salt != nil {
				vf.committed = true
			} else if vf.committed {
				return nil, &VerifyError{Index: n, Reason: "legacy (uncommitted) entry after committed ones"}
			}
			if err := vf.leafFields(n, r); err != nil {
				return nil, err
			}
			if err := rng.Append(r.hash[:], vf.visit); err != nil {
				return nil, fmt.Errorf("verify: %w", err)
			}
			if vf.err != nil {
				return nil, vf.err
			}
			if err := vf.indexRow(n, &r.leafRow); err != nil {
				return nil, err
			}
			n++
			for len(cps) > 0 && cps[0].Size == n {
				if err := checkRoot(rng, cps[0], rep.CheckpointSize); err != nil {
					if what, ok := held[cps[0]]; ok {
						return nil, &VerifyError{Index: rep.CheckpointSize, Reason: fmt.Sprintf("the log's first %d entries are not the tree of %s: history was rewritten (and re-signed, if the stored checkpoints agree with it)", n, what)}
					}
					if base != nil {
						return nil, &VerifyError{Index: rep.CheckpointSize, Reason: fmt.Sprintf("the entries after the checkpoint verified before (size %d) do not lead to the checkpoint signed at size %d: history was rewritten, or entries %d to %d altered", base.Size, cps[0].Size, rep.CheckpointSize, cps[0].Size-1)}
					}
					return nil, err
				}
				rep.CheckpointSize = n
				rep.Checkpoints++
				rep.Latest = cps[0]
				if n == keepAt {
					rep.State = vf.state(rng, cps[0])
				}
				cps = cps[1:]
			}
			if opts.Progress != nil && (n%4096 == 0) {
				opts.Progress(n-from, all)
			}
		}
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
	if base != nil && opts.Scrub > 0 && base.Size > 0 {
		next, err := scrub(ctx, read, base, st.Scrub, opts.Scrub)
		if err != nil {
			return nil, err
		}
		rep.Scrubbed = uint64(opts.Scrub)
		if rep.State == st { // no newer checkpoint: the state moves on only by its scrub cursor
			cp := *st
			rep.State = &cp
		}
		rep.State.Scrub = next
	}
	if opts.Progress != nil {
		opts.Progress(n-from, n-from)
	}
	rep.Size, rep.Tenants = n, len(vf.seqs)
	return rep, nil
}

// open checks that the state holds together: its checkpoint is signed by
// v, and its range is that checkpoint's tree.
func (st *VerifyState) open(v note.Verifier) (*Checkpoint, error) {
	cp, err := ParseCheckpoint(st.Checkpoint, v)
	if err != nil {
		return nil, fmt.Errorf("verify: state: %w", err)
	}
	rng, err := rangeFactory.NewRange(0, cp.Size, hashBytes(st.Range))
	if err != nil {
		return nil, fmt.Errorf("verify: state: its range does not fit its checkpoint of size %d: %w", cp.Size, err)
	}
	root := emptyRoot()
	if cp.Size > 0 {
		r, err := rng.GetRootHash(nil)
		if err != nil {
			return nil, fmt.Errorf("verify: state: %w", err)
		}
		copy(root[:], r)
	}
	if root != cp.Root {
		return nil, fmt.Errorf("verify: state: its range is not the tree of its checkpoint (the state file is damaged)")
	}
	return cp, nil
}

// state returns the verifier's state after the entries of cp.
func (vf *verifier) state(rng *compact.Range, cp *Checkpoint) *VerifyState {
	st := &VerifyState{Checkpoint: cp.Note, Tenants: maps.Clone(vf.seqs), Actors: maps.Clone(vf.actors), Committed: vf.committed, Sequenced: vf.sequenced, LogKeys: vf.chain.Notes()}
	for _, h := range rng.Hashes() {
		st.Range = append(st.Range, tlog.Hash(h))
	}
	return st
}

func hashBytes(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// checkConsistent checks, with a consistency proof from the stored tiles,
// that the tree of older is a prefix of the tree of newer.
func checkConsistent(ctx context.Context, read *sql.DB, older, newer *Checkpoint, olderWhat, newerWhat string) error {
	if older.Size == newer.Size {
		if older.Root != newer.Root {
			return &VerifyError{Index: older.Size, Reason: fmt.Sprintf("%s and %s are both of size %d with different roots: history was rewritten (a fork)", olderWhat, newerWhat, older.Size)}
		}
		return nil
	}
	p, err := tlog.ProveTree(int64(newer.Size), int64(older.Size), newProofReader(ctx, read))
	if err == nil {
		err = tlog.CheckTree(p, int64(newer.Size), newer.Root, int64(older.Size), older.Root)
	}
	if err != nil {
		return &VerifyError{Index: older.Size, Reason: fmt.Sprintf("the stored tree of %s (size %d) does not extend %s (size %d): history was rewritten (%v)", newerWhat, newer.Size, olderWhat, older.Size, err)}
	}
	return nil
}

// scrub checks again count entries below cp.Size from next on (wrapping
// around): each body must open its commitment, and the commitment must be
// in cp's tree (an inclusion proof from the stored tiles). It returns
// where the next scrub starts.
func scrub(ctx context.Context, read *sql.DB, cp *Checkpoint, next uint64, count int) (uint64, error) {
	if next >= cp.Size {
		next = 0
	}
	r := newProofReader(ctx, read)
	for done := 0; done < count; {
		to := min(cp.Size, next+uint64(count-done))
		rows, err := read.QueryContext(ctx, selectStored+` WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(next), int64(to))
		if err != nil {
			return 0, fmt.Errorf("verify: scrub: %w", err)
		}
		want := next
		for rows.Next() {
			s, err := scanStored(rows)
			if err != nil {
				rows.Close()
				return 0, fmt.Errorf("verify: scrub: %w", err)
			}
			if s.Index != want {
				rows.Close()
				return 0, &VerifyError{Index: want, Reason: "entry verified before is missing"}
			}
			if err := s.check(); err != nil {
				rows.Close()
				return 0, err
			}
			p, err := tlog.ProveRecord(int64(cp.Size), int64(s.Index), r)
			if err == nil {
				err = tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(s.Index), tlog.RecordHash(s.Leaf))
			}
			if err != nil {
				rows.Close()
				return 0, &VerifyError{Index: s.Index, Reason: "entry verified before is no longer in the tree of the checkpoint verified before (entry or tiles rewritten)"}
			}
			want++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("verify: scrub: %w", err)
		}
		if want != to {
			return 0, &VerifyError{Index: want, Reason: "entry verified before is missing"}
		}
		done += int(to - next)
		next = to
		if next == cp.Size {
			next = 0
		}
		if cp.Size < uint64(count) && done >= int(cp.Size) {
			break
		}
	}
	return next, nil
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

// loadCheckpoints reads and verifies every stored checkpoint of at least
// size from, in size order.
func loadCheckpoints(ctx context.Context, read *sql.DB, v note.Verifier, from uint64) ([]*Checkpoint, error) {
	rows, err := read.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints WHERE size >= $1 ORDER BY size`, int64(from))
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
	ctx       context.Context
	read      *sql.DB
	chain     *KeyChain          // the log's keys followed
	tiles     map[int]*tileState // by tile level
	seqs      map[string]uint64  // last tenant_seq by tenant
	actors    map[string]uint64  // last actor_seq by principal
	committed bool               // a committed entry was seen
	sequenced bool               // an indexed entry was seen (see [VerifyIndex])
	index     indexFields        // the index fields of the last body read
	err       error
}

// tileState is the stored tile being compared at one tile level.
type tileState struct {
	n    int64
	data []byte // nil when the stored tile is missing
}

// leafFields checks the tenant columns stored beside an entry against its
// body (decoded by a [readChecked] worker) and the tenant's sequence; it
// keeps the fields [verifier.indexRow] checks.
func (vf *verifier) leafFields(n uint64, r *checkedRow) error {
	if !r.jsonOK {
		return &VerifyError{Index: n, Reason: "leaf is not JSON"}
	}
	l := &r.body
	if l.Tenant != r.tenant.String || l.TenantSeq != uint64(r.seq.Int64) {
		return &VerifyError{Index: n, Reason: "leaf row's tenant columns do not match its data"}
	}
	if l.Tenant != "" {
		if want := vf.seqs[l.Tenant] + 1; l.TenantSeq != want {
			return &VerifyError{Index: n, Reason: fmt.Sprintf("tenant sequence gap: tenant_seq %d where %d was due", l.TenantSeq, want)}
		}
		vf.seqs[l.Tenant] = l.TenantSeq
	}
	vf.index = l.indexFields
	return nil
}

// indexRow checks the index columns of the entry leafFields read last
// (after its leaf hash is checked against the tiles, so that an entry
// moved is reported as such).
func (vf *verifier) indexRow(n uint64, r *leafRow) error {
	return checkIndexRow(n, r.actor, r.actorSeq, r.key, r.source, &vf.index, vf.actors, &vf.sequenced)
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
	var err error
	ts.data, err = readTile(vf.ctx, vf.read, tileKey{level, n})
	switch {
	case errors.Is(err, errTileMissing):
		ts.data = nil // finishTiles says so when it is one the tree needs
	case errors.Is(err, errTileMalformed):
		return nil, &VerifyError{Index: uint64(n) << (tileHeight * (level + 1)), Reason: fmt.Sprintf("tile %d/%d width does not match its data", level, n)}
	case err != nil:
		return nil, fmt.Errorf("verify: read tile: %w", err)
	}
	vf.tiles[level] = ts
	return ts, nil
}

// finishTiles checks that the last tile of every level has exactly the
// width a tree of n entries gives it, and that no tile lies beyond. A log
// verified while a node appends to it may have grown since its entries
// were counted: then the last tiles may be as wide, and tiles may lie as
// far, as the entries now stored give them (the next run checks those).
func (vf *verifier) finishTiles(n uint64) error {
	now := n // the entries stored now, read once a tile says the log grew
	grown := func() (uint64, error) {
		if now == n {
			var total sql.NullInt64
			if err := vf.read.QueryRowContext(vf.ctx, `SELECT MAX(idx) + 1 FROM audit_leaves`).Scan(&total); err != nil {
				return 0, fmt.Errorf("verify: %w", err)
			}
			now = max(n, uint64(total.Int64))
		}
		return now, nil
	}
	width := func(n uint64, level int, last int64) int {
		hashes := n >> (tileHeight * level)
		return int(min(hashes-uint64(last)<<tileHeight, 1<<tileHeight))
	}
	for level := 0; n>>(tileHeight*level) > 0; level++ {
		hashes := n >> (tileHeight * level) // stored hashes at this tile level
		last := int64((hashes - 1) >> tileHeight)
		want := width(n, level, last)
		ts, err := vf.tile(level, last)
		if err != nil {
			return err
		}
		first := uint64(last) << (tileHeight * (level + 1))
		if ts.data == nil {
			return &VerifyError{Index: first, Reason: fmt.Sprintf("tile %d/%d is missing", level, last)}
		}
		if got := len(ts.data) / tlog.HashSize; got != want || len(ts.data)%tlog.HashSize != 0 {
			now, err := grown()
			if err != nil {
				return err
			}
			if got < want || got > width(now, level, last) || len(ts.data)%tlog.HashSize != 0 {
				return &VerifyError{Index: first, Reason: fmt.Sprintf("tile %d/%d has width %d, want %d", level, last, got, want)}
			}
		}
	}
	var extra int
	if err := vf.read.QueryRowContext(vf.ctx, `SELECT count(*) FROM audit_tiles WHERE level = 0 AND idx > $1`, int64(n-1)>>tileHeight).Scan(&extra); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if n > 0 && extra > 0 {
		now, err := grown()
		if err != nil {
			return err
		}
		if err := vf.read.QueryRowContext(vf.ctx, `SELECT count(*) FROM audit_tiles WHERE level = 0 AND idx > $1`, int64(now-1)>>tileHeight).Scan(&extra); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if extra > 0 {
			return &VerifyError{Index: n, Reason: "tiles exist beyond the last entry (entries removed)"}
		}
	}
	return nil
}

// leafRowColumns are the columns of audit_leaves the verifiers read, in
// the order [scanLeafRow] takes them.
const leafRowColumns = `idx, tenant_id, tenant_seq, data, salt, leaf, actor, actor_seq, key_id, source_key`

// leafRow is one row of leafRowColumns: the entry and the columns stored
// beside it, which must match its body.
type leafRow struct {
	idx         int64
	tenant      sql.NullString
	seq         sql.NullInt64
	s           Stored
	actor       string
	actorSeq    sql.NullInt64
	key, source sql.NullString
}

// checkedRow is a leafRow with the work that needs no order done: whether
// body and salt open the commitment, the body's fields, the leaf hash.
type checkedRow struct {
	leafRow
	checkErr error // from [Stored.check]
	jsonOK   bool
	body     leafKeys
	hash     tlog.Hash // the record hash of the leaf
}

// checkedBatch is a run of consecutive rows; done is closed when a worker
// has checked them (or err says why the rows could not be read).
type checkedBatch struct {
	rows []checkedRow
	err  error
	done chan struct{}
}

// verifyChunk is how many consecutive entries one query of a reader
// reads, and verifyReaders how many readers read chunks at once (0: as
// many as GOMAXPROCS, at most 4). Variables so that tests can cut a
// small log into many chunks and lanes.
var (
	verifyChunk   = 1024
	verifyReaders = 0
)

// readChecked streams the entries [from, end), in order, in batches
// whose order-free checks (a SHA-256 commitment, a JSON decode and a leaf
// hash per entry) run on every core, while the caller does the ordered
// part (sequences, the compact range, the tiles). The rows themselves
// are read by several readers at once, each on its own connection: chunk
// i of verifyChunk entries is read by reader i mod R, and the chunks are
// handed on in index order. One reader was the bound of a full
// verification — a SQLite row scan costs about as much as all the
// checks (docs/benchmarks.md (aq)). A gap in the entries shows as an
// index out of order; entries appended after end are the next run's.
// Cancelling ctx stops it.
func readChecked(ctx context.Context, read *sql.DB, from, end uint64) <-chan *checkedBatch {
	out := make(chan *checkedBatch, 16)
	work := make(chan *checkedBatch, 16)
	workers := max(1, runtime.GOMAXPROCS(0))
	for range workers {
		go func() {
			for b := range work {
				for i := range b.rows {
					r := &b.rows[i]
					r.s.Index = uint64(r.idx)
					if r.checkErr = r.s.check(); r.checkErr != nil {
						continue
					}
					r.jsonOK = decodeLeafKeys(r.s.Data, &r.body) == nil
					r.hash = tlog.RecordHash(r.s.Leaf)
				}
				close(b.done)
			}
		}()
	}
	readers := verifyReaders
	if readers <= 0 {
		readers = min(runtime.GOMAXPROCS(0), 4)
	}
	chunk := uint64(verifyChunk)
	// Lane j carries chunks j, j+R, j+2R, …: the merger below takes one
	// from each lane in turn, so a closed lane where the next chunk was
	// due means there is none.
	lanes := make([]chan *checkedBatch, readers)
	for j := range lanes {
		lanes[j] = make(chan *checkedBatch, 2)
		go func() {
			defer close(lanes[j])
			for c := from + uint64(j)*chunk; c < end; c += uint64(readers) * chunk {
				b := readChunk(ctx, read, c, min(c+chunk, end))
				select {
				case lanes[j] <- b:
				case <-ctx.Done():
					return
				}
				if b.err != nil {
					return
				}
			}
		}()
	}
	go func() {
		defer close(out)
		defer close(work)
		for j := 0; ; j = (j + 1) % readers {
			b, ok := <-lanes[j]
			if !ok {
				return
			}
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				close(b.done)
				return
			}
			select {
			case work <- b:
			case <-ctx.Done():
				close(b.done)
				return
			}
		}
	}()
	return out
}

// readChunk reads the entries [from, to) in one query.
func readChunk(ctx context.Context, read *sql.DB, from, to uint64) *checkedBatch {
	b := &checkedBatch{rows: make([]checkedRow, 0, to-from), done: make(chan struct{})}
	rows, err := read.QueryContext(ctx, `SELECT `+leafRowColumns+` FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(from), int64(to))
	if err != nil {
		return &checkedBatch{err: fmt.Errorf("verify: %w", err), done: make(chan struct{})}
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanLeafRow(rows)
		if err != nil {
			return &checkedBatch{err: fmt.Errorf("verify: %w", err), done: make(chan struct{})}
		}
		b.rows = append(b.rows, checkedRow{leafRow: r})
	}
	if err := rows.Err(); err != nil {
		return &checkedBatch{err: fmt.Errorf("verify: %w", err), done: make(chan struct{})}
	}
	return b
}

func scanLeafRow(rows *sql.Rows) (leafRow, error) {
	var r leafRow
	err := rows.Scan(&r.idx, &r.tenant, &r.seq, &r.s.Data, &r.s.Salt, &r.s.Leaf, &r.actor, &r.actorSeq, &r.key, &r.source)
	return r, err
}
