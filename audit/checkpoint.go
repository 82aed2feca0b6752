package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement of the tree's size and root, in the
// C2SP tlog-checkpoint format.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
	Note   []byte // the whole signed note
}

// GenerateKey returns a new Ed25519 note signing key and its verifier key
// for a log whose origin is name (C2SP signed-note key names).
func GenerateKey(origin string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, origin)
}

func checkpointBody(origin string, size uint64, root tlog.Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
}

// SignCheckpoint signs the current head (if it is not signed yet) and
// stores it; it returns the latest checkpoint.
// In queued mode only the leader signs; on another node it returns the
// latest checkpoint.
func (l *Log) SignCheckpoint(ctx context.Context) (*Checkpoint, error) {
	if l.cfg.Queued && !l.leader.Load() {
		return l.Checkpoint(ctx)
	}
	return l.signOn(ctx, l.w)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (l *Log) signOn(ctx context.Context, ex execer) (*Checkpoint, error) {
	l.sigMu.Lock()
	defer l.sigMu.Unlock()
	size, root := l.head()
	if size > l.lastSigned || !l.signedAny {
		s, err := l.signerFor(size)
		if err != nil {
			return nil, err
		}
		if err := l.storeCheckpoint(ctx, ex, size, root, s); err != nil {
			return nil, err
		}
		l.lastSigned, l.signedAny = size, true
		l.nextSign.Store(time.Now().Add(l.cfg.CheckpointInterval).UnixNano())
	}
	return l.Checkpoint(ctx)
}

// storeCheckpoint signs the tree head (size, root) with signer and stores it with ex.
func (l *Log) storeCheckpoint(ctx context.Context, ex execer, size uint64, root tlog.Hash, signer note.Signer) error {
	msg, err := note.Sign(&note.Note{Text: checkpointBody(l.cfg.Origin, size, root)}, signer)
	if err != nil {
		return fmt.Errorf("sign checkpoint: %w", err)
	}
	if _, err := ex.ExecContext(ctx, `INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (size) DO NOTHING`, int64(size), root[:], msg, l.cfg.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	return nil
}

// signedInCommit records a checkpoint the sequencer stored with a batch.
func (l *Log) signedInCommit(size uint64) {
	l.sigMu.Lock()
	if size > l.lastSigned || !l.signedAny {
		l.lastSigned, l.signedAny = size, true
	}
	l.sigMu.Unlock()
}

// unsigned reports whether the committed head has no checkpoint yet.
func (l *Log) unsigned() bool {
	size, _ := l.head()
	l.sigMu.Lock()
	defer l.sigMu.Unlock()
	return size > l.lastSigned || !l.signedAny
}

// checkpoint signs the head if it is not signed yet; the sequencer calls
// it when the interval is up after a commit that left the head unsigned.
func (l *Log) checkpoint() {
	if !l.unsigned() {
		return
	}
	if _, err := l.SignCheckpoint(context.Background()); err != nil {
		l.cfg.Logger.Error("sign checkpoint", "err", err)
		if l.cfg.OnSignError != nil {
			go l.cfg.OnSignError(err) // it may append: never from the log's own goroutines
		}
	}
}

// every calls fn every d until the log closes. It is one of the log's
// goroutines: the caller has added it to l.wg.
func (l *Log) every(d time.Duration, fn func()) {
	defer l.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			fn()
		}
	}
}

// Checkpoint returns the latest signed checkpoint.
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	msg, err := latestCheckpointNote(ctx, l.r)
	if err != nil {
		return nil, err
	}
	return l.parseStored(ctx, msg)
}

// parseStored parses a checkpoint stored in the log's database. If the
// chain does not verify it, another node may have rotated the key: the
// chain follows the transitions stored since (each signed by the key it
// retires, so the database alone adds none) and tries once more.
func (l *Log) parseStored(ctx context.Context, msg []byte) (*Checkpoint, error) {
	cp, err := ParseCheckpoint(msg, l.cfg.Verifier)
	if err == nil {
		return cp, nil
	}
	msgs, rerr := ReadTransitions(ctx, l.r)
	if rerr != nil {
		return nil, err
	}
	if l.chain.FollowAll(msgs) != nil {
		return nil, err
	}
	return ParseCheckpoint(msg, l.cfg.Verifier)
}

// ParseCheckpoint verifies a signed checkpoint note with v and parses it.
// The body must be exactly origin, size and base64 root hash, each on its
// own line (extension lines are refused: custos writes none), and the
// origin must be the verifier key's name.
func ParseCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, verifiersOf(v))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return nil, errors.New("checkpoint: body must be origin, size and root hash lines")
	}
	cp := &Checkpoint{Origin: lines[0], Note: bytes.Clone(msg)}
	if cp.Origin != v.Name() {
		return nil, fmt.Errorf("checkpoint: origin %q is not the key's name %q", cp.Origin, v.Name())
	}
	if cp.Size, err = strconv.ParseUint(lines[1], 10, 63); err != nil || strconv.FormatUint(cp.Size, 10) != lines[1] {
		return nil, errors.New("checkpoint: malformed size")
	}
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return nil, errors.New("checkpoint: malformed root hash")
	}
	copy(cp.Root[:], h)
	return cp, nil
}
