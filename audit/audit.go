// Package audit is custos's append-only, tamper-evident audit log.
//
// Every access to tenant data becomes a [Leaf] — JSON without personal
// data — appended by [Log.Append], which returns only after the leaf is
// durable. The Merkle tree does not hold the JSON but a salted SHA-256
// commitment to it ([Commit]): the tree, checkpoints and entry bundles are
// public, an entry's body is read only by the tenant it concerns and by
// security staff, who check it against the commitment. A change to data
// is the [Entry.Apply] of its leaf and commits in the same transaction, so
// the two exist together or not at all.
//
// One sequencer goroutine assigns indexes with adaptive group commit: it
// takes the first queued entry, drains whatever else is already queued
// (up to MaxBatch) and commits the lot in one transaction — at once when
// idle, batched under load. The Merkle tree (RFC 6962 hashing, as C2SP
// tlog-tiles specifies) is computed only with golang.org/x/mod/sumdb/tlog
// and stored in the database as tlog-tiles (256 hashes per tile). The
// sequencer signs a C2SP tlog-checkpoint note at most once per
// CheckpointInterval while the log grows, none while it is idle, so that
// every entry is covered within one interval (see docs/log.md). [Verify]
// recomputes everything from the leaves and names the first bad index;
// [VerifyFrom] goes on from a state an earlier run kept.
//
// The SQL runs unchanged on SQLite and PostgreSQL; the engine packages
// create the audit_* tables.
package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/sqlq"
)

// Leaf is one audit entry. Its JSON encoding is the entry's body; the
// Merkle leaf is a commitment to that body (see [Commit]). It never holds
// personal data: tokens and counts, never addresses.
type Leaf struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id,omitempty"`
	Actor     string    `json:"actor"`
	// ActorSeq numbers the entries of a principal actor ("pr_…") 1, 2, …
	// with no gap, as TenantSeq numbers a tenant's: a report of what a
	// principal did proves it omits nothing by covering the sequence.
	ActorSeq  uint64 `json:"actor_seq,omitempty"`
	ActorKind string `json:"actor_kind,omitempty"`
	// ActorTenant is the tenant a tenant-bound actor (tenant admin,
	// editor, service) belongs to: detection tells a tenant acting on its
	// own data from anyone acting on someone else's.
	ActorTenant string `json:"actor_tenant,omitempty"`
	KeyID       string `json:"key_id,omitempty"`
	// Person is the actor's person pseudonym (custos.Principal.Person):
	// several principals of one identity share it.
	Person    string   `json:"person,omitempty"`
	Source    string   `json:"source,omitempty"`
	Action    string   `json:"action"`
	Tenant    string   `json:"tenant,omitempty"`
	TenantSeq uint64   `json:"tenant_seq,omitempty"`
	List      string   `json:"list,omitempty"`
	Tokens    []string `json:"tokens,omitempty"`
	Count     int      `json:"count,omitempty"`
	Outcome   string   `json:"outcome"`
	Code      string   `json:"code,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Detail    string   `json:"detail,omitempty"`
	// Severity marks entries that must stand out ("high": a break-glass
	// grant); empty is ordinary.
	Severity string `json:"severity,omitempty"`
	// Message, Digest and Template describe a message sent through the
	// relay (contact.send): its id ("ms_…"), the hex SHA-256 of what this
	// recipient was sent, and of the message before substitution (one
	// campaign, one template digest). Never the address or the content.
	Message  string `json:"message,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Template string `json:"template,omitempty"`
	// Mark is set on every contact.create leaf: 16 bytes, hex. A real
	// create's is random; a canary's (planted through the same path with
	// a leaf of its own) is a keyed tag of its token under the canary
	// key. Without that key the two cannot be told apart; with it
	// (vault.CanaryIndex.Planted) every canary create can be checked.
	Mark string `json:"mark,omitempty"`
}

// Outcomes.
const (
	OutcomeOK       = "ok"
	OutcomeDenied   = "denied"   // refused: unauthenticated or forbidden
	OutcomeRejected = "rejected" // invalid, conflicting or unknown
	OutcomeError    = "error"    // failed for a reason of ours
)

// Entry is a leaf plus an optional change that must commit with it.
type Entry struct {
	Leaf Leaf
	// Apply, if non-nil, runs inside the transaction that appends the
	// leaf, under its own savepoint. It may complete the leaf (a count
	// known only after the change). If it returns an error its changes
	// are rolled back, the leaf is recorded with the error's outcome,
	// code and message, and Append returns the error.
	Apply func(ctx context.Context, tx *sql.Tx, leaf *Leaf) error
}

// Receipt says where an entry landed. In queued mode (Config.Queued) an
// entry is durable in the queue when Append returns and the leader gives it
// its index later: Queued is set and Index and TenantSeq are zero.
type Receipt struct {
	Index     uint64
	TenantSeq uint64
	Queued    bool
}

// Config configures a [Log].
type Config struct {
	Origin   string // checkpoint origin line; also the signing key's name
	Signer   note.Signer
	Verifier note.Verifier
	// CheckpointInterval is the cadence of signed checkpoints (default 800ms):
	// while the log grows the sequencer signs at most one per interval, and
	// an entry waits at most one interval for a checkpoint that covers it;
	// an idle log signs none. Under load the sequencer signs the new head
	// inside the commit that extends the tree, so a checkpoint never waits
	// behind the batches it would cover; after a quiet spell it signs the
	// head on its own when the interval is up. [Log.SignCheckpoint] signs
	// on demand, outside the cadence, for whoever needs a checkpoint
	// covering an entry now (a deletion receipt).
	CheckpointInterval time.Duration
	// CheckpointRetention is how long stored checkpoints are kept
	// (0: forever). Older ones are pruned except those kept by
	// [Log.Keep] and the latest of each hour (see [Log.Prune]).
	CheckpointRetention time.Duration
	MaxBatch            int // default 1024
	// Placeholders is the engine's style for bulk inserts (sqlq.Question
	// for SQLite; the zero value, $n, for PostgreSQL).
	Placeholders sqlq.Style
	Logger       *slog.Logger
	Now          func() time.Time

	// Queued selects the mode for several nodes over one PostgreSQL: Append
	// commits each entry, with its change, to the audit_queue table, and the
	// one node holding the leader lock (a PostgreSQL advisory lock) moves
	// queued entries into the tree in order and signs checkpoints. Without
	// it, this process is the only sequencer (SQLite, or one node).
	Queued bool
	// LeaderPoll is how often a queued-mode node that is not the leader
	// tries to become it and refreshes its view of the tree (default 500ms).
	LeaderPoll time.Duration
	// IntegrateInterval is how often the leader looks for queued entries
	// when the queue was empty (default 5ms).
	IntegrateInterval time.Duration
	// ChoreIdle is how long the sequencer waits for an entry before it
	// steps a chore in a transaction of its own (default 5ms; see
	// [Log.RunChore]).
	ChoreIdle time.Duration
	// OnSignError, if set, hears of every failure to sign a checkpoint
	// (the detector turns it into an alert).
	OnSignError func(error)

	// VerifyInterval is how often the log's own verifier checks the stored
	// log against its latest signed checkpoint, from the point it verified
	// before (default 1s; negative turns it off). It also runs once, over
	// the whole log, in Open. See [Log.Integrity].
	VerifyInterval time.Duration
	// ScrubEntries is how many already-verified entries each round checks
	// again (default 256), so that a change to old history is found too.
	ScrubEntries int
	// Trusted is a signed checkpoint an earlier run accepted (see
	// OnVerified): the stored log must extend it, which catches a
	// truncation, an older backup restored or a rewrite re-signed with the
	// log's key while this process was not running.
	Trusted []byte
	// OnVerified, if set, hears of each checkpoint the verifier accepted,
	// for keeping it outside the database as the next run's Trusted.
	OnVerified func(*Checkpoint)
	// OnCommit, if set, hears of every group commit the sequencer made:
	// how many entries, how long the transaction took, and whether it
	// failed (metrics: batch sizes and commit latency).
	OnCommit func(entries int, took time.Duration, err error)
	// OnTamper, if set, hears once of the first mismatch the verifier
	// finds (the detector turns it into the log-integrity alert).
	OnTamper func(error)
}

// ErrUnavailable is returned when the log cannot be written. Callers must
// not serve the access: it maps to 503.
var ErrUnavailable = custos.Errorf(custos.EUNAVAILABLE, "audit log unavailable")

// Log is an open audit log.
type Log struct {
	w, r *sql.DB
	cfg  Config

	queue chan *pending

	closeMu sync.RWMutex
	closed  bool

	headMu sync.RWMutex
	size   uint64
	root   tlog.Hash
	// edge is level 0's partial tile as this process's sequencer computed
	// it (edgeN its number), published with the head: the stored tiles
	// end at the last full one (readTile), and an in-process reader checks
	// the newest entries against these hashes rather than against hashes
	// derived from the very rows it checks. Never written to in place.
	edge  []byte
	edgeN int64

	// insertFull inserts leafChunk leaves, prepared once: parsing a
	// 700-parameter statement costs more than executing it.
	insertFull *sql.Stmt

	// sequencer-owned state
	tiles     *tileCache
	tenantSeq map[string]uint64
	actorSeq  map[string]uint64

	sigMu      sync.Mutex
	lastSigned uint64
	signedAny  bool
	nextSign   atomic.Int64  // unix ns after which the sequencer signs in its commit
	lastKept   atomic.Uint64 // 1 + the size Keep marked last (0: none)
	pruned     atomic.Uint64 // Prune starts from this size

	stop    chan struct{}
	seqDone chan struct{} // closed when the sequence goroutine has exited
	wg      sync.WaitGroup

	leader atomic.Bool // queued mode: this node holds the leader lock

	chores  chan *chore
	choreMu sync.Mutex // one RunChore at a time
	chore   *chore     // sequencer-owned: the chore being stepped

	mon monitor // the log's own verifier

	// The signing key (keychain.go, rotate.go): chain is the log's
	// verifier keys from its root (shared with cfg.Verifier), key the one
	// in force. pending is sequencer-owned (the leader's in queued mode).
	chain   *KeyChain
	keyMu   sync.Mutex
	key     keyState
	pending *pendingKey
	rotMu   sync.Mutex // one RotateKey at a time
	rotReq  chan *rotateReq
}

type pending struct {
	ctx  context.Context
	e    Entry
	done chan result
	// rest are the entries AppendAll was given with this one: they travel
	// the queue as one item, so the sequencer puts them in one batch (one
	// commit, one time) — never split by a drain between two sends.
	rest []*pending
}

type result struct {
	receipt Receipt
	err     error
}

// Open opens the log stored in the database and starts its sequencer and
// checkpointer. read and write are the database's pools, in the order
// vault.New takes them (on SQLite write is the single writer connection).
func Open(ctx context.Context, read, write *sql.DB, cfg Config) (*Log, error) {
	if cfg.Signer == nil || cfg.Verifier == nil || cfg.Origin == "" {
		return nil, errors.New("open audit log: origin, signer and verifier are required")
	}
	if cfg.Signer.Name() != cfg.Origin {
		return nil, fmt.Errorf("open audit log: signing key name %q differs from origin %q", cfg.Signer.Name(), cfg.Origin)
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LeaderPoll <= 0 {
		cfg.LeaderPoll = 500 * time.Millisecond
	}
	if cfg.IntegrateInterval <= 0 {
		cfg.IntegrateInterval = 5 * time.Millisecond
	}
	if cfg.VerifyInterval == 0 {
		cfg.VerifyInterval = time.Second
	}
	if cfg.ScrubEntries == 0 {
		cfg.ScrubEntries = 256
	}
	if cfg.ChoreIdle <= 0 {
		cfg.ChoreIdle = choreIdle
	}
	chain := NewKeyChain(cfg.Verifier)
	cfg.Verifier = chain
	l := &Log{w: write, r: read, cfg: cfg, queue: make(chan *pending, 4*cfg.MaxBatch), stop: make(chan struct{}), seqDone: make(chan struct{}), chores: make(chan *chore),
		chain: chain, rotReq: make(chan *rotateReq)}
	if err := l.loadKeys(ctx, read); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	var last sql.NullInt64
	if err := read.QueryRowContext(ctx, `SELECT MAX(size) FROM audit_checkpoints`).Scan(&last); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l.lastSigned, l.signedAny = uint64(last.Int64), last.Valid
	if !cfg.Queued && (!last.Valid || l.size > l.lastSigned) {
		if _, err := l.SignCheckpoint(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.VerifyInterval > 0 {
		if cfg.Trusted != nil {
			cp, err := ParseCheckpoint(cfg.Trusted, cfg.Verifier)
			if err != nil {
				return nil, fmt.Errorf("open audit log: trusted checkpoint: %w", err)
			}
			l.mon.anchor = cp
		}
		// The whole log, once, before anything is served: a mismatch
		// does not stop Open (the server must start to say why), it
		// makes Integrity report it.
		if err := l.verifyOnce(ctx); err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
	}
	var err error
	if l.insertFull, err = write.PrepareContext(ctx, insertLeaves+cfg.Placeholders.Values(leafChunk, leafColumns)); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l.wg.Add(1)
	go l.sequence()
	if cfg.Queued {
		l.wg.Add(1)
		go l.lead()
	}
	if cfg.VerifyInterval > 0 {
		l.wg.Add(1)
		go l.every(cfg.VerifyInterval, l.watch)
	}
	if cfg.CheckpointRetention > 0 {
		l.wg.Add(1)
		go l.every(pruneEvery, l.prune)
	}
	return l, nil
}

// load reads the committed tree size and root from the database.
func (l *Log) load(ctx context.Context) error { return l.loadFrom(ctx, l.w) }

func (l *Log) loadFrom(ctx context.Context, q querier) error {
	var n sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(idx) FROM audit_leaves`).Scan(&n); err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	size := uint64(0)
	if n.Valid {
		size = uint64(n.Int64) + 1
	}
	l.tiles = newTileCache()
	l.tenantSeq = map[string]uint64{}
	l.actorSeq = map[string]uint64{}
	root := emptyRoot()
	if size > 0 {
		var err error
		root, err = tlog.TreeHash(int64(size), l.tiles.reader(ctx, q, nil))
		if err != nil {
			return fmt.Errorf("open audit log: tree hash at size %d: %w", size, err)
		}
	}
	l.headMu.Lock()
	l.size, l.root = size, root
	l.headMu.Unlock()
	return nil
}

// Size returns the number of committed entries.
func (l *Log) Size() uint64 {
	l.headMu.RLock()
	defer l.headMu.RUnlock()
	return l.size
}

func (l *Log) head() (uint64, tlog.Hash) {
	l.headMu.RLock()
	defer l.headMu.RUnlock()
	return l.size, l.root
}

// Append records e and returns once it is durable. If the log cannot be
// written it returns [ErrUnavailable]; if e.Apply fails, it returns that
// error (the leaf is recorded with the failure).
func (l *Log) Append(ctx context.Context, e Entry) (Receipt, error) {
	p := &pending{ctx: context.WithoutCancel(ctx), e: e, done: make(chan result, 1)}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return Receipt{}, ErrUnavailable
	}
	l.queue <- p
	l.closeMu.RUnlock()
	// Wait even if ctx is cancelled: the entry is queued and will commit;
	// the caller learns the outcome rather than guessing it.
	r := <-p.done
	return r.receipt, r.err
}

// AppendAll records es in order and returns once all are durable: queued
// together, they ride one commit when the sequencer is idle. It returns
// each entry's receipt and the first error.
func (l *Log) AppendAll(ctx context.Context, es []Entry) ([]Receipt, error) {
	ps := make([]*pending, len(es))
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return nil, ErrUnavailable
	}
	for i, e := range es {
		ps[i] = &pending{ctx: context.WithoutCancel(ctx), e: e, done: make(chan result, 1)}
	}
	if len(ps) > 0 {
		ps[0].rest = ps[1:]
		l.queue <- ps[0]
	}
	l.closeMu.RUnlock()
	out := make([]Receipt, len(es))
	var first error
	for i, p := range ps {
		r := <-p.done
		out[i] = r.receipt
		if r.err != nil && first == nil {
			first = r.err
		}
	}
	return out, first
}

// Close stops accepting entries, commits those queued, signs a final
// checkpoint and stops the background goroutines.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.queue)
	l.closeMu.Unlock()
	close(l.stop)
	l.wg.Wait()
	var err error
	if !l.cfg.Queued { // in queued mode the leader signed on its way out
		_, err = l.SignCheckpoint(context.Background())
	}
	return errors.Join(err, l.insertFull.Close())
}

// DefaultCheckpointInterval is [Config.CheckpointInterval]'s default:
// 800ms, not 1s, so that an entry is covered by a signed checkpoint within
// 1s (issue 17's p99 goal) — the wait is the interval plus the append's own
// queueing and commit, and at 1s the measured p99 was 1.05–1.19s, at 800ms
// 0.88–0.93s (docs/benchmarks.md (y)).
const DefaultCheckpointInterval = 800 * time.Millisecond

// sequence is the sequencer: group commit of queued entries, and the
// steps of a chore (see [Log.RunChore]). Outside queued mode it also keeps
// the checkpoint cadence: a commit signs the head when the interval since
// the last checkpoint is up (see commitTx), and when a commit left the
// head unsigned the sequencer arms a timer for the moment the interval is
// up, so that the entries of a quiet spell are covered then — and an idle
// log, whose head is signed, arms nothing.
func (l *Log) sequence() {
	defer l.wg.Done()
	defer close(l.seqDone)
	defer l.endChore(ErrUnavailable)
	batch := make([]*pending, 0, l.cfg.MaxBatch)
	idle := time.NewTimer(l.cfg.ChoreIdle)
	defer idle.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var due <-chan time.Time // non-nil while the checkpoint timer is armed
	for {
		var tick <-chan time.Time
		if l.chore != nil {
			idle.Reset(l.cfg.ChoreIdle)
			tick = idle.C
		}
		select {
		case first, ok := <-l.queue:
			if !ok {
				return
			}
			batch = append(append(batch[:0], first), first.rest...)
		drain:
			for len(batch) < l.cfg.MaxBatch {
				select {
				case p, ok := <-l.queue:
					if !ok {
						break drain
					}
					batch = append(append(batch, p), p.rest...)
				default:
					break drain
				}
			}
			l.commit(batch)
		case ch := <-l.chores:
			l.chore = ch
		case <-tick:
			l.choreAlone()
		case <-due:
			due = nil
			// A commit may have signed since the timer was armed (and
			// moved nextSign): signing now would make two checkpoints
			// in one interval. The timer is re-armed below instead.
			if time.Now().UnixNano() >= l.nextSign.Load() {
				l.checkpoint()
			}
		}
		if due == nil && !l.cfg.Queued && l.unsigned() {
			timer.Reset(time.Until(time.Unix(0, l.nextSign.Load())))
			due = timer.C
		}
	}
}

// Waiting reports whether entries are queued for the sequencer. An Apply
// that does bulk work (an import's chunk) checks it to yield: the entries
// waiting are audited requests that cannot commit until it returns.
func (l *Log) Waiting() bool { return len(l.queue) > 0 }

// commit appends a batch in one transaction and answers its waiters.
func (l *Log) commit(batch []*pending) {
	start := time.Now()
	results, err := l.commitTx(batch)
	if l.cfg.OnCommit != nil {
		l.cfg.OnCommit(len(batch), time.Since(start), err)
	}
	if err != nil {
		l.cfg.Logger.Error("audit log commit failed", "entries", len(batch), "err", err)
		l.endChore(ErrUnavailable) // its step, if any, was rolled back with the batch
		// Nothing in the batch is acknowledged. Reload what is committed:
		// in-memory caches may hold state of the rolled-back transaction.
		// (In queued mode this goroutine touches no tree state.)
		if !l.cfg.Queued {
			if lerr := l.load(context.Background()); lerr != nil {
				l.cfg.Logger.Error("audit log reload failed", "err", lerr)
			}
		}
		for _, p := range batch {
			p.done <- result{err: ErrUnavailable}
		}
		return
	}
	for i, p := range batch {
		p.done <- results[i]
	}
}

func outcomeOf(err error) string {
	switch custos.ErrorCode(err) {
	case custos.EFORBIDDEN, custos.EUNAUTHORIZED, custos.ETOOMANY:
		return OutcomeDenied
	case custos.EINVALID, custos.ECONFLICT, custos.ENOTFOUND, custos.ETOOLARGE, custos.EUNSUPPORTED, custos.EREASON:
		return OutcomeRejected
	}
	return OutcomeError
}

const leafColumns = 12

func (l *Log) commitTx(batch []*pending) ([]result, error) {
	ctx := context.Background() // never cancelled mid-transaction: see Append
	if !l.cfg.Queued {
		l.pending = nil // a rotation of a failed transaction never happened
	}
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() { tx.Rollback() }()

	// A chore's step goes first, while tx holds nothing else: a failed
	// step is undone by starting over.
	stepped, choreDone := false, false
	if l.chore != nil {
		if tx, stepped, choreDone, err = l.choreStep(ctx, tx, l.chore); err != nil {
			return nil, err
		}
	}
	results := make([]result, len(batch))
	if tx, err = l.applyAll(ctx, tx, batch, results, stepped); err != nil {
		return nil, err
	}
	leaves := make([]*Leaf, len(batch))
	for i, p := range batch {
		leaves[i] = &p.e.Leaf
	}
	if l.cfg.Queued {
		if err := l.enqueue(ctx, tx, leaves); err != nil {
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
		l.choreCommitted(stepped, choreDone)
		for i := range results {
			results[i].receipt.Queued = true
		}
		return results, nil
	}
	oldSize, _ := l.head()
	receipts, root, err := l.writeLeaves(ctx, tx, oldSize, leaves)
	if err != nil {
		return nil, err
	}
	newSize := oldSize + uint64(len(leaves))
	// A key rotation in this batch (RotateKey's Apply) signs the
	// checkpoint that covers its statement at once, with the new key.
	sign := time.Now().UnixNano() >= l.nextSign.Load() || l.pending != nil
	if sign {
		var s note.Signer
		if l.pending != nil {
			s = l.pending.key.signer
		} else if s, err = l.signerFor(newSize); err != nil {
			return nil, err
		}
		if err := l.storeCheckpoint(ctx, tx, newSize, root, s); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	l.installPending() // before the head moves: see installPending
	l.advance(newSize, root)
	l.choreCommitted(stepped, choreDone)
	if sign {
		l.nextSign.Store(time.Now().Add(l.cfg.CheckpointInterval).UnixNano())
		l.signedInCommit(newSize)
	}
	for i := range results {
		results[i].receipt = receipts[i]
	}
	return results, nil
}

// advance records a committed tree head.
func (l *Log) advance(size uint64, root tlog.Hash) {
	l.tiles.committed(size)
	var edge []byte
	n := int64(size-1) >> tileHeight
	if size > 0 {
		edge = l.tiles.tiles[tileKey{0, n}]
	}
	l.headMu.Lock()
	l.size, l.root = size, root
	l.edge, l.edgeN = edge, n
	l.headMu.Unlock()
}

// applyAll stamps each entry's time and runs its change. A failed change
// is undone and recorded in its leaf and result. It returns the
// transaction to go on with, which is a new one if it had to restart.
func (l *Log) applyAll(ctx context.Context, tx *sql.Tx, batch []*pending, results []result, dirty bool) (*sql.Tx, error) {
	now := l.cfg.Now().UTC().Truncate(time.Millisecond)
	// dirty tells whether an earlier entry of this batch (or a chore's
	// step) changed data. Until one has, a failed change is undone by
	// restarting the transaction, and the entry runs without a savepoint:
	// under a savepoint SQLite copies every page it modifies to a
	// statement journal first, which cost a third of a bulk import's time.
	for i, p := range batch {
		leaf := &p.e.Leaf
		if leaf.Time.IsZero() {
			leaf.Time = now
		}
		if p.e.Apply == nil {
			continue
		}
		if !dirty {
			aerr := p.e.Apply(p.ctx, tx, leaf)
			if aerr == nil {
				dirty = true
				continue
			}
			tx.Rollback()
			var err error
			if tx, err = l.w.BeginTx(ctx, nil); err != nil {
				return tx, fmt.Errorf("begin: %w", err)
			}
			leaf.Outcome, leaf.Code, leaf.Reason = outcomeOf(aerr), custos.ErrorCode(aerr), custos.ErrorMessage(aerr)
			results[i].err = aerr
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT entry`); err != nil {
			return tx, fmt.Errorf("savepoint: %w", err)
		}
		aerr := p.e.Apply(p.ctx, tx, leaf)
		if aerr != nil {
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT entry`); err != nil {
				return tx, fmt.Errorf("rollback to savepoint: %w", err)
			}
			leaf.Outcome, leaf.Code, leaf.Reason = outcomeOf(aerr), custos.ErrorCode(aerr), custos.ErrorMessage(aerr)
			results[i].err = aerr
		}
		if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT entry`); err != nil {
			return tx, fmt.Errorf("release savepoint: %w", err)
		}
	}
	return tx, nil
}

// writeLeaves assigns leaves their indexes from oldSize, their tenant
// sequence numbers and their actors' (see [IsPrincipal]), writes the index
// columns (actor_seq, key_id, source_key: see index.go), inserts them and extends the tree, in tx. It returns
// where each landed and the new root. Each leaf is marshalled here, once,
// and committed to under a fresh salt: the tree holds the commitment, the
// row the body and the salt (see [Commit]). Both modes come here, so the
// queued mode's leader salts the entries it integrates.
func (l *Log) writeLeaves(ctx context.Context, tx *sql.Tx, oldSize uint64, leaves []*Leaf) ([]Receipt, tlog.Hash, error) {
	receipts := make([]Receipt, len(leaves))
	datas := make([][]byte, len(leaves))
	args := make([]any, 0, leafChunk*leafColumns)
	for start := 0; start < len(leaves); start += leafChunk {
		chunk := leaves[start:min(start+leafChunk, len(leaves))]
		args = args[:0]
		for j, leaf := range chunk {
			i := start + j
			if leaf.Tenant != "" {
				seq, err := l.nextTenantSeq(ctx, tx, leaf.Tenant)
				if err != nil {
					return nil, tlog.Hash{}, err
				}
				leaf.TenantSeq = seq
			}
			leaf.ActorSeq = 0
			if IsPrincipal(leaf.Actor) {
				seq, err := l.nextActorSeq(ctx, tx, leaf.Actor)
				if err != nil {
					return nil, tlog.Hash{}, err
				}
				leaf.ActorSeq = seq
			}
			data, err := json.Marshal(leaf)
			if err != nil {
				return nil, tlog.Hash{}, fmt.Errorf("marshal leaf: %w", err)
			}
			if len(data) > maxLeafBytes {
				return nil, tlog.Hash{}, fmt.Errorf("leaf %d bytes exceeds %d", len(data), maxLeafBytes)
			}
			// The tree gets the commitment; the body stays in data.
			salt := newSalt()
			commitment := Commit(salt, data)
			datas[i] = commitment
			idx := oldSize + uint64(i)
			receipts[i] = Receipt{Index: idx, TenantSeq: leaf.TenantSeq}
			args = append(args, int64(idx), nullString(leaf.Tenant), nullSeq(leaf.TenantSeq), leaf.Actor, leaf.Action, leaf.Time.UnixMilli(), data, commitment, salt,
				nullSeq(leaf.ActorSeq), nullString(leaf.KeyID), nullString(SourceKey(leaf.Source)))
		}
		var err error
		if len(chunk) == leafChunk && l.insertFull != nil {
			_, err = tx.StmtContext(ctx, l.insertFull).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertLeaves+l.cfg.Placeholders.Values(len(chunk), leafColumns), args...)
		}
		if err != nil {
			return nil, tlog.Hash{}, fmt.Errorf("insert leaves: %w", err)
		}
	}
	root, err := l.tiles.extend(ctx, tx, oldSize, datas)
	if err != nil {
		return nil, tlog.Hash{}, err
	}
	return receipts, root, nil
}

// maxLeafBytes is the C2SP entry bundle limit (a uint16 length prefix).
const maxLeafBytes = 1<<16 - 1

const leafChunk = 100

const insertLeaves = `INSERT INTO audit_leaves (idx, tenant_id, tenant_seq, actor, action, created_at, data, leaf, salt, actor_seq, key_id, source_key) VALUES `

func (l *Log) nextTenantSeq(ctx context.Context, tx *sql.Tx, tenant string) (uint64, error) {
	last, ok := l.tenantSeq[tenant]
	if !ok {
		var n sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(tenant_seq) FROM audit_leaves WHERE tenant_id = $1`, tenant).Scan(&n); err != nil {
			return 0, fmt.Errorf("tenant sequence: %w", err)
		}
		last = uint64(n.Int64)
	}
	l.tenantSeq[tenant] = last + 1
	return last + 1, nil
}

// emptyRoot is the RFC 6962 root of the empty tree, SHA-256 of nothing
// (tlog, built for trees that are never empty, returns a zero hash).
func emptyRoot() tlog.Hash {
	var h tlog.Hash
	copy(h[:], rfc6962.DefaultHasher.EmptyRoot())
	return h
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullSeq(n uint64) sql.NullInt64 { return sql.NullInt64{Int64: int64(n), Valid: n != 0} }

// Entry returns the body of the entry at index (its JSON, a [Leaf]),
// checked against its commitment and the tree like [Log.Entries].
func (l *Log) Entry(ctx context.Context, index uint64) ([]byte, error) {
	if err := l.reach(ctx, index+1); err != nil {
		return nil, err
	}
	if index >= l.Size() {
		return nil, custos.Errorf(custos.ENOTFOUND, "no entry %d", index)
	}
	s, err := l.Entries(ctx, index, 1)
	if err != nil {
		return nil, err
	}
	return s[0].Data, nil
}

// Stored is one entry as read back from the log.
type Stored struct {
	Index uint64
	Data  []byte // the body: the entry's JSON
	Salt  []byte // nil for a legacy entry, whose leaf is Data itself
	Leaf  []byte // the Merkle leaf bytes: the commitment to Data under Salt
}

// Opening returns what opens the entry's leaf (see [Opening]).
func (s *Stored) Opening() []byte { return Opening(s.Data, s.Salt) }

// check verifies that the row's body and salt open its stored leaf. A
// legacy row (no salt) has no stored leaf: its leaf is its body.
func (s *Stored) check() error {
	if s.Salt == nil && s.Leaf == nil {
		s.Leaf = s.Data
		return nil
	}
	want, err := LeafOf(s.Data, s.Salt)
	if err != nil || s.Salt == nil || !bytes.Equal(want, s.Leaf) {
		return &VerifyError{Index: s.Index, Reason: "entry body does not match its commitment (body, salt or leaf altered)"}
	}
	return nil
}

const selectStored = `SELECT idx, data, salt, leaf FROM audit_leaves`

func scanStored(rows *sql.Rows) (Stored, error) {
	var s Stored
	var idx int64
	err := rows.Scan(&idx, &s.Data, &s.Salt, &s.Leaf)
	s.Index = uint64(idx)
	return s, err
}

// ReadEntry reads the entry at index from a log's database and checks
// that its body and salt open its leaf; whether that leaf is in a tree is
// for an inclusion proof to say. It serves tools that read the database
// without opening the log (custos log proof).
func ReadEntry(ctx context.Context, read *sql.DB, index uint64) (*Stored, error) {
	rows, err := read.QueryContext(ctx, selectStored+` WHERE idx = $1`, int64(index))
	if err != nil {
		return nil, fmt.Errorf("read entry: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read entry: %w", err)
		}
		return nil, custos.Errorf(custos.ENOTFOUND, "no entry %d", index)
	}
	s, err := scanStored(rows)
	if err != nil {
		return nil, fmt.Errorf("read entry: %w", err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Entries returns up to n entries from index from, in order, each checked
// twice: its body and salt must open its commitment, and the commitment's
// record hash must be the tree's leaf hash. Either failing is a
// [*VerifyError] (someone changed the row). It is how the detector reads
// the log; [Stored.Data] is the body.
func (l *Log) Entries(ctx context.Context, from uint64, n int) ([]Stored, error) {
	if err := l.reach(ctx, from+1); err != nil {
		return nil, err
	}
	size := l.Size()
	if from >= size || n <= 0 {
		return nil, nil
	}
	to := min(size, from+uint64(n))
	rows, err := l.r.QueryContext(ctx, selectStored+` WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(from), int64(to))
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	out := make([]Stored, 0, to-from)
	for rows.Next() {
		s, err := scanStored(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read entries: %w", err)
		}
		out = append(out, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	indexes := make([]int64, len(out))
	for i, s := range out {
		if s.Index != from+uint64(i) {
			return nil, &VerifyError{Index: from + uint64(i), Reason: "entry missing"}
		}
		indexes[i] = tlog.StoredHashIndex(0, int64(s.Index))
	}
	if uint64(len(out)) != to-from {
		return nil, &VerifyError{Index: from + uint64(len(out)), Reason: "entry missing"}
	}
	hashes, err := l.storedReader(ctx).ReadHashes(indexes)
	if err != nil {
		return nil, fmt.Errorf("read entries: tree: %w", err)
	}
	for i := range out {
		s := &out[i]
		if err := s.check(); err != nil {
			return nil, err
		}
		if tlog.RecordHash(s.Leaf) != hashes[i] {
			return nil, &VerifyError{Index: s.Index, Reason: "entry does not match the tree"}
		}
	}
	return out, nil
}
