package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
)

// The log's own verifier (the monitor) checks what is stored against the
// latest signed checkpoint, at Open and then every VerifyInterval, each
// time from the point it verified before:
//
//   - the latest stored checkpoint must verify and be consistent with the
//     last one the monitor accepted (or with Config.Trusted, a checkpoint
//     a previous run accepted): no rollback, no rewrite, no fork;
//   - the stored leaves must reach its size (no truncation);
//   - every entry it has not seen yet must open its commitment, carry the
//     tenant columns its body says, continue its tenant's sequence, and
//     hash to the level-0 tile hash at its index, read through
//     tlog.TileHashReader, which proves each tile against the checkpoint's
//     root — so tiles, leaves and checkpoint agree;
//   - and ScrubEntries entries already verified are checked again the same
//     way (round-robin), so a change to old history is found within
//     size/ScrubEntries rounds without re-reading the whole log each round.
//
// The first mismatch is kept ([Log.Integrity]) until the process restarts,
// and reported once to Config.OnTamper.

// ErrTampered is wrapped by every mismatch the log's own verifier reports
// ([Log.Integrity]).
var ErrTampered = errors.New("audit log failed verification")

// TamperError is a mismatch the log's own verifier found. It says where
// (an index or size) and why; it never holds an entry's content.
type TamperError struct {
	Index  uint64
	Reason string
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("audit log failed verification at entry %d: %s", e.Index, e.Reason)
}

func (e *TamperError) Unwrap() error { return ErrTampered }

// transient marks a failure to read the database, which is not evidence
// of tampering: the monitor tries again next round.
type transient struct{ err error }

func (t *transient) Error() string { return t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

// monitor is the state of the log's own verifier. Everything but failed is
// owned by the goroutine running verify (Open's first pass, then watch).
type monitor struct {
	mu     sync.Mutex
	failed error // sticky: the first mismatch

	anchor  *Checkpoint // last checkpoint accepted (or Config.Trusted)
	next    uint64      // entries below next were verified
	seqs    map[string]uint64
	legacy  bool   // whether entry next-1 was a legacy one (see Verify)
	scrub   uint64 // next already-verified entry to check again
	started bool   // the first full pass completed
}

// Integrity returns nil while the stored log verifies, or the first
// mismatch found by the log's own verifier — a [*TamperError] wrapping
// [ErrTampered] — until the process restarts. A caller that gets an error
// must stop serving writes (the server answers 503 log_tampered).
func (l *Log) Integrity() error {
	l.mon.mu.Lock()
	defer l.mon.mu.Unlock()
	return l.mon.failed
}

// tampered records the first mismatch and reports it once.
func (l *Log) tampered(err *TamperError) {
	l.mon.mu.Lock()
	first := l.mon.failed == nil
	if first {
		l.mon.failed = err
	}
	l.mon.mu.Unlock()
	if !first {
		return
	}
	l.cfg.Logger.Error("audit log failed verification: refusing writes", "index", err.Index, "reason", err.Reason)
	if l.cfg.OnTamper != nil {
		go l.cfg.OnTamper(err) // it may append: never from the log's own goroutines
	}
}

// verifyOnce runs one round of the monitor: it verifies what is new up to
// the latest checkpoint and scrubs a slice of what was verified before.
// A mismatch is recorded; a database failure is returned for logging.
func (l *Log) verifyOnce(ctx context.Context) error {
	if l.Integrity() != nil {
		return nil
	}
	err := l.verifyRound(ctx)
	var te *TamperError
	if errors.As(err, &te) {
		l.tampered(te)
		return nil
	}
	return err
}

// watch runs the monitor once; a goroutine of the log calls it every
// VerifyInterval.
func (l *Log) watch() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*l.cfg.VerifyInterval+30*time.Second)
	defer cancel()
	if err := l.verifyOnce(ctx); err != nil {
		l.cfg.Logger.Warn("audit log verifier: will retry", "err", err)
	}
}

// monitorChunk is how many new entries the monitor checks per query.
const monitorChunk = 1024

func (l *Log) verifyRound(ctx context.Context) error {
	m := &l.mon
	cp, err := l.latestStored(ctx)
	if err != nil || cp == nil {
		return err
	}
	if a := m.anchor; a != nil {
		switch {
		case cp.Size < a.Size:
			return &TamperError{Index: cp.Size, Reason: fmt.Sprintf("log rolled back: the latest checkpoint is of size %d, but size %d was verified before (truncated, or restored from an older backup)", cp.Size, a.Size)}
		case cp.Size == a.Size && cp.Root != a.Root:
			return &TamperError{Index: cp.Size, Reason: fmt.Sprintf("two different checkpoints of size %d: history was rewritten and re-signed", cp.Size)}
		}
	}
	var top sql.NullInt64
	if err := l.r.QueryRowContext(ctx, `SELECT MAX(idx) FROM audit_leaves`).Scan(&top); err != nil {
		return &transient{fmt.Errorf("verify: %w", err)}
	}
	if have := uint64(top.Int64 + 1); !top.Valid || have < cp.Size {
		if !top.Valid {
			have = 0
		}
		if cp.Size > 0 {
			return &TamperError{Index: have, Reason: fmt.Sprintf("log truncated: it has %d entries, but a checkpoint was signed at size %d", have, cp.Size)}
		}
	}
	tr := &tileSource{ctx: ctx, q: l.r, cache: map[tlog.Tile][]byte{}}
	hr := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: cp.Root}, tr)
	if a := m.anchor; a != nil && a.Size > 0 && cp.Size > a.Size {
		p, err := tlog.ProveTree(int64(cp.Size), int64(a.Size), hr)
		if err != nil {
			return tileErr(err, a.Size, cp.Size)
		}
		if tlog.CheckTree(p, int64(cp.Size), cp.Root, int64(a.Size), a.Root) != nil {
			return &TamperError{Index: a.Size, Reason: fmt.Sprintf("the checkpoint of size %d is not consistent with the one of size %d verified before: history was rewritten and re-signed", cp.Size, a.Size)}
		}
	}
	if m.seqs == nil {
		m.seqs = map[string]uint64{}
	}
	for m.next < cp.Size {
		to := min(cp.Size, m.next+monitorChunk)
		if err := l.checkRange(ctx, hr, m.next, to, true); err != nil {
			return err
		}
		m.next = to
	}
	m.anchor, m.started = cp, true
	if l.cfg.OnVerified != nil {
		l.cfg.OnVerified(cp)
	}
	// Scrub: check a slice of the entries verified before again.
	if m.next > 0 && l.cfg.ScrubEntries > 0 {
		if m.scrub >= m.next {
			m.scrub = 0
		}
		to := min(m.next, m.scrub+uint64(l.cfg.ScrubEntries))
		if err := l.checkRange(ctx, hr, m.scrub, to, false); err != nil {
			return err
		}
		m.scrub = to
	}
	return nil
}

// latestStored reads and verifies the latest stored checkpoint (nil if
// there is none yet and nothing was verified).
func (l *Log) latestStored(ctx context.Context) (*Checkpoint, error) {
	var size int64
	var msg []byte
	err := l.r.QueryRowContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &msg)
	if errors.Is(err, sql.ErrNoRows) {
		if a := l.mon.anchor; a != nil && a.Size > 0 {
			return nil, &TamperError{Index: 0, Reason: fmt.Sprintf("every checkpoint was removed, but size %d was verified before", a.Size)}
		}
		return nil, nil
	} else if err != nil {
		return nil, &transient{fmt.Errorf("verify: read checkpoint: %w", err)}
	}
	cp, err := l.parseStored(ctx, msg)
	if err != nil {
		return nil, &TamperError{Index: uint64(size), Reason: "the latest stored checkpoint does not verify: " + err.Error()}
	}
	if cp.Size != uint64(size) {
		return nil, &TamperError{Index: uint64(size), Reason: "the latest stored checkpoint's row does not match its note"}
	}
	return cp, nil
}

// checkRange checks entries [from, to) against the tree hr proves. fresh
// says these are new entries (their tenant sequences are checked and
// recorded); old ones are checked against the tree only.
func (l *Log) checkRange(ctx context.Context, hr tlog.HashReader, from, to uint64, fresh bool) error {
	m := &l.mon
	rows, err := l.r.QueryContext(ctx, `SELECT `+leafRowColumns+` FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(from), int64(to))
	if err != nil {
		return &transient{fmt.Errorf("verify: %w", err)}
	}
	defer rows.Close()
	indexes := make([]int64, 0, to-from)
	leaves := make([]tlog.Hash, 0, to-from)
	n := from
	for rows.Next() {
		row, err := scanLeafRow(rows)
		idx, tenant, seq, s := row.idx, row.tenant, row.seq, row.s
		if err != nil {
			return &transient{fmt.Errorf("verify: %w", err)}
		}
		if uint64(idx) != n {
			return &TamperError{Index: n, Reason: "entry is missing"}
		}
		s.Index = n
		if err := s.check(); err != nil {
			return &TamperError{Index: n, Reason: err.(*VerifyError).Reason}
		}
		var body leafKeys // decoded as json.Unmarshal would, without its cost for the sequencer's own bodies
		if decodeLeafKeys(s.Data, &body) != nil {
			return &TamperError{Index: n, Reason: "entry body is not JSON"}
		}
		if body.Tenant != tenant.String || body.TenantSeq != uint64(seq.Int64) {
			return &TamperError{Index: n, Reason: "entry row's tenant columns do not match its body"}
		}
		if fresh {
			if s.Salt == nil && n > 0 && !m.legacy {
				return &TamperError{Index: n, Reason: "legacy (uncommitted) entry after committed ones"}
			}
			m.legacy = s.Salt == nil
			if body.Tenant != "" {
				if want := m.seqs[body.Tenant] + 1; body.TenantSeq != want {
					return &TamperError{Index: n, Reason: fmt.Sprintf("tenant sequence gap: tenant_seq %d where %d was due", body.TenantSeq, want)}
				}
				m.seqs[body.Tenant] = body.TenantSeq
			}
		}
		indexes = append(indexes, tlog.StoredHashIndex(0, int64(n)))
		leaves = append(leaves, tlog.RecordHash(s.Leaf))
		n++
	}
	if err := rows.Err(); err != nil {
		return &transient{fmt.Errorf("verify: %w", err)}
	}
	if n != to {
		// Nothing from n on, under a checkpoint that covers to: the tail
		// was cut off (a gap with entries after it is caught above).
		return &TamperError{Index: n, Reason: fmt.Sprintf("log truncated: entries %d to %d, under a signed checkpoint, are missing", n, to-1)}
	}
	hashes, err := hr.ReadHashes(indexes)
	if err != nil {
		return tileErr(err, from, to)
	}
	for i, h := range hashes {
		if h != leaves[i] {
			return &TamperError{Index: from + uint64(i), Reason: "entry does not match the tree of the signed checkpoint (leaf or tile altered, or entries reordered)"}
		}
	}
	return nil
}

// tileErr classifies a failure to read proven hashes: a database error is
// transient, anything else means the stored tiles do not support the
// signed checkpoint.
func tileErr(err error, from, to uint64) error {
	var t *transient
	if errors.As(err, &t) {
		return err
	}
	return &TamperError{Index: from, Reason: fmt.Sprintf("the stored tiles for entries %d to %d do not match the signed checkpoint (%v)", from, to, err)}
}

// tileSource reads stored hash tiles for tlog.TileHashReader, which
// proves each against the checkpoint's root before using it.
type tileSource struct {
	ctx   context.Context
	q     *sql.DB
	cache map[tlog.Tile][]byte
}

func (t *tileSource) Height() int { return tileHeight }

func (t *tileSource) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		if d, ok := t.cache[tile]; ok {
			out[i] = d
			continue
		}
		data, err := readTile(t.ctx, t.q, tileKey{tile.L, tile.N})
		if err != nil && !errors.Is(err, errTileMissing) && !errors.Is(err, errTileMalformed) {
			return nil, &transient{err}
		} else if err != nil {
			return nil, err
		}
		if len(data) < tile.W*tlog.HashSize {
			return nil, fmt.Errorf("tile %d/%d is too short", tile.L, tile.N)
		}
		out[i] = data[:tile.W*tlog.HashSize]
		t.cache[tile] = out[i]
	}
	return out, nil
}

func (t *tileSource) SaveTiles([]tlog.Tile, [][]byte) {}

// checkHead refuses to serve proofs for cp when the stored leaves do not
// reach its size: the log was truncated under a checkpoint it signed. It
// records the mismatch and returns an error that tells the caller so.
func (l *Log) checkHead(ctx context.Context, cp *Checkpoint) error {
	var top sql.NullInt64
	if err := l.r.QueryRowContext(ctx, `SELECT MAX(idx) FROM audit_leaves`).Scan(&top); err != nil {
		return fmt.Errorf("read log size: %w", err)
	}
	have := uint64(0)
	if top.Valid {
		have = uint64(top.Int64) + 1
	}
	if have >= cp.Size {
		return nil
	}
	te := &TamperError{Index: have, Reason: fmt.Sprintf("log truncated: it has %d entries, but a checkpoint was signed at size %d", have, cp.Size)}
	l.tampered(te)
	return tamperedErr()
}

// tamperedErr is what a request answered from a log that failed
// verification gets: 503, saying why in words that hold no detail.
func tamperedErr() error {
	return custos.Errorf(custos.EUNAVAILABLE, "the audit log failed verification; this node has stopped serving it until an operator investigates")
}
