package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// keyState is the log's signing key in force and the size it signs from.
// Sizes below from were signed by keys this process no longer holds.
type keyState struct {
	signer note.Signer
	from   uint64
}

// pendingKey is a rotation made inside the sequencer's open transaction:
// in force for that transaction's checkpoint, installed if it commits.
type pendingKey struct {
	key  keyState
	stmt []byte
}

type rotateReq struct {
	ctx  context.Context
	next note.Signer
	vkey string
	leaf Leaf
	also func(context.Context, *sql.Tx) error
	done chan rotateRes
}

type rotateRes struct {
	t   *Transition
	r   Receipt
	err error
}

// ErrNotSequencer is returned by [Log.RotateKey] on a node that does not
// sequence the log (queued mode, another node leads).
var ErrNotSequencer = errors.New("this node is not the log's sequencer")

// IsCurrentKey reports whether s is the key chain c says signs from now
// on: it signs a probe and checks it with the newest key.
func IsCurrentKey(c *KeyChain, s note.Signer) bool {
	msg, err := note.Sign(&note.Note{Text: "custos log key probe\n"}, s)
	if err != nil {
		return false
	}
	c.mu.RLock()
	v := c.keys[len(c.keys)-1].v
	c.mu.RUnlock()
	_, err = note.Open(msg, note.VerifierList(v))
	return err == nil
}

// loadKeys reads the stored transitions into the log's chain and checks
// that the configured signer is the newest key (fail closed: a node
// holding a retired log.key must not sign).
func (l *Log) loadKeys(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) error {
	rows, err := q.QueryContext(ctx, `SELECT note FROM audit_log_keys ORDER BY from_size`)
	if err != nil {
		return fmt.Errorf("read log key transitions: %w", err)
	}
	var msgs [][]byte
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("read log key transitions: %w", err)
		}
		msgs = append(msgs, []byte(s))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read log key transitions: %w", err)
	}
	if err := l.chain.FollowAll(msgs); err != nil {
		return fmt.Errorf("stored %w", err)
	}
	l.keyMu.Lock()
	s := l.key.signer
	l.keyMu.Unlock()
	if s == nil {
		s = l.cfg.Signer
	}
	if !IsCurrentKey(l.chain, s) {
		return errors.New("log.key is not the log's current signing key: the log's key was rotated (docs/verify.md, \"Rotating the log's key\"); install the current log.key")
	}
	_, from := l.chain.Current()
	l.keyMu.Lock()
	l.key = keyState{signer: s, from: from}
	l.keyMu.Unlock()
	return nil
}

// signerFor returns the installed key if it may sign a checkpoint of size.
func (l *Log) signerFor(size uint64) (note.Signer, error) {
	l.keyMu.Lock()
	k := l.key
	l.keyMu.Unlock()
	if size < k.from {
		return nil, fmt.Errorf("sign checkpoint: size %d is before the current key's start %d", size, k.from)
	}
	return k.signer, nil
}

// Signer is a [note.Signer] that signs with the log's key in force, for
// whoever signs statements about the log beside its checkpoints (deletion
// receipts): after a rotation it signs with the new key.
func (l *Log) Signer() note.Signer { return liveSigner{l} }

type liveSigner struct{ l *Log }

func (s liveSigner) cur() note.Signer {
	s.l.keyMu.Lock()
	defer s.l.keyMu.Unlock()
	return s.l.key.signer
}
func (s liveSigner) Name() string                    { return s.cur().Name() }
func (s liveSigner) KeyHash() uint32                 { return s.cur().KeyHash() }
func (s liveSigner) Sign(msg []byte) ([]byte, error) { return s.cur().Sign(msg) }

// Keys returns the log's key chain (shared: it follows rotations).
func (l *Log) Keys() *KeyChain { return l.chain }

// RotateKey rotates the log's signing key to next (verifier key vkey,
// of the log's origin): in one transaction it appends leaf, with action
// [ActionLogKeyRotate] and the transition statement as its Detail, stores
// the statement, and signs the checkpoint that covers it with next. The
// statement, signed by the key in force and by next, says next signs
// every checkpoint from the size of the tree before the entry plus one,
// so every checkpoint covering the entry is signed by next, and none
// before it. also, if not nil, runs in the same transaction (the
// announcement). If the transaction fails nothing changes. Only the node
// that sequences the log rotates ([ErrNotSequencer] elsewhere).
func (l *Log) RotateKey(ctx context.Context, next note.Signer, vkey string, leaf Leaf, also func(context.Context, *sql.Tx) error) (*Transition, Receipt, error) {
	nv, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, Receipt{}, fmt.Errorf("rotate log key: new key: %w", err)
	}
	if nv.Name() != l.cfg.Origin || next.Name() != l.cfg.Origin || nv.KeyHash() != next.KeyHash() {
		return nil, Receipt{}, errors.New("rotate log key: the new key must be named by the log's origin and match its verifier key")
	}
	leaf.Action, leaf.Outcome = ActionLogKeyRotate, OutcomeOK
	l.rotMu.Lock()
	defer l.rotMu.Unlock()
	if l.cfg.Queued {
		if !l.leader.Load() {
			return nil, Receipt{}, ErrNotSequencer
		}
		req := &rotateReq{ctx: ctx, next: next, vkey: vkey, leaf: leaf, also: also, done: make(chan rotateRes, 1)}
		select {
		case l.rotReq <- req:
		case <-ctx.Done():
			return nil, Receipt{}, ctx.Err()
		case <-l.stop:
			return nil, Receipt{}, ErrUnavailable
		}
		res := <-req.done
		return res.t, res.r, res.err
	}
	var stmt []byte
	r, err := l.Append(ctx, Entry{Leaf: leaf, Apply: func(ctx context.Context, tx *sql.Tx, lf *Leaf) error {
		// On the sequencer, inside the transaction that appends lf: the
		// head is the size before this batch.
		oldSize, _ := l.head()
		p, err := l.prepareRotation(ctx, tx, next, vkey, oldSize+1, lf.Time)
		if err != nil {
			return err
		}
		if also != nil {
			if err := also(ctx, tx); err != nil {
				return err
			}
		}
		lf.Detail = string(p.stmt)
		stmt = p.stmt
		l.pending = p
		return nil
	}})
	if err != nil {
		return nil, r, fmt.Errorf("rotate log key: %w", err)
	}
	t, err := l.chain.Follow(stmt)
	return t, r, err
}

// prepareRotation signs the statement with the key in force and next,
// checks that the chain follows it, and stores it in tx.
func (l *Log) prepareRotation(ctx context.Context, tx *sql.Tx, next note.Signer, vkey string, from uint64, t time.Time) (*pendingKey, error) {
	l.keyMu.Lock()
	cur := l.key.signer
	l.keyMu.Unlock()
	stmt, err := SignTransition(cur, next, vkey, from, t)
	if err != nil {
		return nil, err
	}
	if _, err := l.chain.Clone().Follow(stmt); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log_keys (from_size, vkey, note, created_at) VALUES ($1, $2, $3, $4)`,
		int64(from), vkey, string(stmt), t.UnixMilli()); err != nil {
		return nil, fmt.Errorf("store log key transition: %w", err)
	}
	return &pendingKey{key: keyState{signer: next, from: from}, stmt: stmt}, nil
}

// installPending puts a committed rotation in force. The sequencer calls
// it after the commit and before it advances the head, so no checkpoint
// of the new sizes is signed by the old key.
func (l *Log) installPending() {
	if l.pending == nil {
		return
	}
	if _, err := l.chain.Follow(l.pending.stmt); err != nil {
		// prepareRotation checked it on a copy of the chain.
		l.cfg.Logger.Error("log key transition", "err", err)
	}
	l.keyMu.Lock()
	l.key = l.pending.key
	l.keyMu.Unlock()
	l.pending = nil
}

// rotateQueued is RotateKey on the queued-mode leader: the entry goes
// into the tree directly, in a transaction of its own on conn.
func (l *Log) rotateQueued(ctx context.Context, conn *sql.Conn, req *rotateReq) rotateRes {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return rotateRes{err: fmt.Errorf("begin: %w", err)}
	}
	defer tx.Rollback()
	oldSize, _ := l.head()
	leaf := req.leaf
	leaf.Time = l.cfg.Now().UTC().Truncate(time.Millisecond)
	p, err := l.prepareRotation(ctx, tx, req.next, req.vkey, oldSize+1, leaf.Time)
	if err != nil {
		return rotateRes{err: err}
	}
	leaf.Detail = string(p.stmt)
	if req.also != nil {
		if err := req.also(ctx, tx); err != nil {
			return rotateRes{err: err}
		}
	}
	receipts, root, err := l.writeLeaves(ctx, tx, oldSize, []*Leaf{&leaf})
	if err != nil {
		return rotateRes{err: err}
	}
	if err := l.storeCheckpoint(ctx, tx, oldSize+1, root, p.key.signer); err != nil {
		return rotateRes{err: err}
	}
	if err := tx.Commit(); err != nil {
		return rotateRes{err: fmt.Errorf("commit: %w", err)}
	}
	l.pending = p
	l.installPending()
	l.advance(oldSize+1, root)
	l.signedInCommit(oldSize + 1)
	t, err := l.chain.Follow(p.stmt)
	return rotateRes{t: t, r: receipts[0], err: err}
}
