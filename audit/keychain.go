package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Rotation of the log signing key (issue 22, docs/verify.md "Rotating the
// log's key").
//
// The log's checkpoints are signed by one Ed25519 note key at a time. A
// rotation records in the log a transition statement: a signed note,
// signed by the key in force and by the new key, naming the new verifier
// key and the tree size from which it signs. From that size on only the
// new key signs checkpoints; the old key's signature on a checkpoint of
// that size or larger is refused by everyone who followed the statement.
//
// A verifier keeps its trust root, the first key (log.pub as the log was
// created), and follows the statements in order with [KeyChain.Follow]:
// each must be signed by the key the chain has reached, so holding an
// older key (log.key stolen before a rotation) gives no way to add a
// statement, nor to sign a checkpoint the chain accepts at a size past
// that key's range. The origin never changes: it names the log, whose
// tree goes on (C2SP tlog-checkpoint origins are the log's identity; a
// witness keys its state by origin and is given the new verifier key).

// transitionHeader is the first line of a transition statement.
const transitionHeader = "custos.dev/log-key-transition/v1"

// ActionLogKeyRotate is the action of the entry that records a transition
// statement (its Detail is the statement).
const ActionLogKeyRotate = "log.key.rotate"

// MaxTransitionBytes bounds a transition statement.
const MaxTransitionBytes = 4 << 10

// Transition is a parsed transition statement.
type Transition struct {
	Origin   string
	NewKey   string // the new verifier key (C2SP signed-note vkey)
	FromSize uint64 // the smallest tree size the new key signs
	Time     time.Time
	Note     []byte // the whole signed note
}

func transitionBody(origin, vkey string, from uint64, t time.Time) string {
	return fmt.Sprintf("%s\n%s\n%s\n%d\n%d\n", transitionHeader, origin, vkey, from, t.Unix())
}

// SignTransition makes the statement that the key of next (whose verifier
// key is nextVKey) signs the log's checkpoints from tree size from on,
// signed by old (the key in force) and by next.
func SignTransition(old, next note.Signer, nextVKey string, from uint64, t time.Time) ([]byte, error) {
	if old.Name() != next.Name() {
		return nil, errors.New("log key transition: the new key's name must be the log's origin")
	}
	if old.KeyHash() == next.KeyHash() {
		return nil, errors.New("log key transition: the new key is the old one")
	}
	return note.Sign(&note.Note{Text: transitionBody(old.Name(), nextVKey, from, t)}, old, next)
}

// parseTransitionText parses a statement's text (unverified).
func parseTransitionText(text string) (*Transition, note.Verifier, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 6 || lines[5] != "" || lines[0] != transitionHeader {
		return nil, nil, errors.New("log key transition: malformed statement")
	}
	t := &Transition{Origin: lines[1], NewKey: lines[2]}
	nv, err := note.NewVerifier(t.NewKey)
	if err != nil {
		return nil, nil, fmt.Errorf("log key transition: new key: %w", err)
	}
	if nv.Name() != t.Origin {
		return nil, nil, errors.New("log key transition: the new key's name is not the origin")
	}
	if t.FromSize, err = strconv.ParseUint(lines[3], 10, 63); err != nil || strconv.FormatUint(t.FromSize, 10) != lines[3] || t.FromSize == 0 {
		return nil, nil, errors.New("log key transition: malformed size")
	}
	sec, err := strconv.ParseInt(lines[4], 10, 64)
	if err != nil || strconv.FormatInt(sec, 10) != lines[4] || sec < 0 {
		return nil, nil, errors.New("log key transition: malformed time")
	}
	t.Time = time.Unix(sec, 0).UTC()
	return t, nv, nil
}

type chainKey struct {
	from uint64
	v    note.Verifier
	vkey string // "" for a root given as a note.Verifier
}

// KeyChain is the log's verifier keys in force, each from the tree size it
// signs from, starting from a trust root. It is a [note.Verifier] (the
// newest key, for checkpoints of the sizes it signs) and a
// [note.Verifiers]: [ParseCheckpoint] given a KeyChain accepts a
// checkpoint signed by the key whose range holds the checkpoint's size,
// and no other. Not safe for concurrent Follow and use.
type KeyChain struct {
	mu          sync.RWMutex
	origin      string
	keys        []chainKey
	transitions []*Transition
}

// NewKeyChain starts a chain at root, the key the log began with.
func NewKeyChain(root note.Verifier) *KeyChain {
	if c, ok := root.(*KeyChain); ok {
		return c.Clone()
	}
	return &KeyChain{origin: root.Name(), keys: []chainKey{{v: root}}}
}

// Clone returns a copy that follows on its own.
func (c *KeyChain) Clone() *KeyChain {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return &KeyChain{origin: c.origin, keys: append([]chainKey(nil), c.keys...), transitions: append([]*Transition(nil), c.transitions...)}
}

// Follow checks a transition statement against the chain's newest key and
// extends the chain with it. A statement the chain already followed is
// accepted again (no change). It refuses a statement not signed by the
// newest key (an older or a foreign key), one not signed by the key it
// names, one of another origin, one that reuses a key of the chain, and
// one whose size is not past the newest key's start.
func (c *KeyChain) Follow(msg []byte) (*Transition, error) {
	if len(msg) > MaxTransitionBytes {
		return nil, errors.New("log key transition: too large")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.transitions {
		if bytes.Equal(t.Note, msg) {
			return t, nil
		}
	}
	cur := c.keys[len(c.keys)-1]
	n, err := note.Open(msg, note.VerifierList(cur.v))
	if err != nil {
		return nil, fmt.Errorf("log key transition: not signed by the log's current key: %w", err)
	}
	t, nv, err := parseTransitionText(n.Text)
	if err != nil {
		return nil, err
	}
	if t.Origin != c.origin {
		return nil, fmt.Errorf("log key transition: origin %q is not the log's %q", t.Origin, c.origin)
	}
	for _, k := range c.keys {
		if k.v.KeyHash() == nv.KeyHash() {
			return nil, errors.New("log key transition: names a key the log used before")
		}
	}
	if t.FromSize <= cur.from {
		return nil, fmt.Errorf("log key transition: from size %d is not past the current key's start %d", t.FromSize, cur.from)
	}
	if _, err := note.Open(msg, note.VerifierList(nv)); err != nil {
		return nil, fmt.Errorf("log key transition: not signed by the new key: %w", err)
	}
	t.Note = bytes.Clone(msg)
	c.keys = append(c.keys, chainKey{from: t.FromSize, v: nv, vkey: t.NewKey})
	c.transitions = append(c.transitions, t)
	return t, nil
}

// FollowAll follows each statement in order.
func (c *KeyChain) FollowAll(msgs [][]byte) error {
	for _, m := range msgs {
		if _, err := c.Follow(m); err != nil {
			return err
		}
	}
	return nil
}

// Transitions returns the statements followed, oldest first.
func (c *KeyChain) Transitions() []*Transition {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*Transition(nil), c.transitions...)
}

// Notes returns the statements followed, oldest first, as signed notes.
func (c *KeyChain) Notes() [][]byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([][]byte, len(c.transitions))
	for i, t := range c.transitions {
		out[i] = t.Note
	}
	return out
}

// Rotated reports whether the chain has followed a transition.
func (c *KeyChain) Rotated() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys) > 1
}

// Current returns the newest key's verifier key ("" if it is the root
// and the root was given only as a verifier) and the size it signs from.
func (c *KeyChain) Current() (vkey string, from uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k := c.keys[len(c.keys)-1]
	return k.vkey, k.from
}

// At returns the verifier of the key that signs checkpoints of size.
func (c *KeyChain) At(size uint64) note.Verifier {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k := c.keys[0]
	for _, x := range c.keys[1:] {
		if size >= x.from {
			k = x
		}
	}
	return k.v
}

// Name is the log's origin.
func (c *KeyChain) Name() string { return c.origin }

// KeyHash is the newest key's.
func (c *KeyChain) KeyHash() uint32 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.keys[len(c.keys)-1].v.KeyHash()
}

// Verify checks sig by the newest key, on a message it may sign.
func (c *KeyChain) Verify(msg, sig []byte) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rangeOf(len(c.keys)-1).Verify(msg, sig)
}

// Verifier implements [note.Verifiers]: the key of the chain with that
// hash, limited to the checkpoint sizes it signs.
func (c *KeyChain) Verifier(name string, hash uint32) (note.Verifier, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if name == c.origin {
		for i := len(c.keys) - 1; i >= 0; i-- {
			if c.keys[i].v.KeyHash() == hash {
				return c.rangeOf(i), nil
			}
		}
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

func (c *KeyChain) rangeOf(i int) rangeVerifier {
	r := rangeVerifier{Verifier: c.keys[i].v, origin: c.origin, from: c.keys[i].from, until: ^uint64(0)}
	if i+1 < len(c.keys) {
		r.until = c.keys[i+1].from
	}
	return r
}

// rangeVerifier is one key of a chain: a checkpoint of the log whose size
// is outside [from, until) does not verify, whatever its signature.
// Other messages (receipt statements) verify by signature: their callers
// bind them to a checkpoint and check them with [KeyChain.At].
type rangeVerifier struct {
	note.Verifier
	origin      string
	from, until uint64
}

func (r rangeVerifier) Verify(msg, sig []byte) bool {
	if size, ok := checkpointSize(msg, r.origin); ok && (size < r.from || size >= r.until) {
		return false
	}
	return r.Verifier.Verify(msg, sig)
}

// checkpointSize returns the size line of a checkpoint body of origin.
func checkpointSize(msg []byte, origin string) (uint64, bool) {
	rest, ok := bytes.CutPrefix(msg, []byte(origin+"\n"))
	if !ok {
		return 0, false
	}
	line, _, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(line), 10, 64)
	return n, err == nil
}

// verifiersOf is what note.Open is given for v: a KeyChain answers for
// every key it holds, any other verifier for itself.
func verifiersOf(v note.Verifier) note.Verifiers {
	if c, ok := v.(*KeyChain); ok {
		return c
	}
	return note.VerifierList(v)
}

// VerifiersOf is [verifiersOf] for other packages that open notes signed
// by the log (receipts).
func VerifiersOf(v note.Verifier) note.Verifiers { return verifiersOf(v) }

// ParseTransitionList reads what /log/key-transitions serves: one
// statement per line, base64. Each is checked when followed.
func ParseTransitionList(b []byte) ([][]byte, error) {
	if len(b) > 64*MaxTransitionBytes {
		return nil, errors.New("log key transitions: too large")
	}
	var out [][]byte
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		n, err := base64.StdEncoding.Strict().DecodeString(line)
		if err != nil {
			return nil, errors.New("log key transitions: malformed line")
		}
		out = append(out, n)
	}
	return out, nil
}

// ReadTransitions returns the transition statements stored in the
// database, oldest first.
func ReadTransitions(ctx context.Context, read *sql.DB) ([][]byte, error) {
	rows, err := read.QueryContext(ctx, `SELECT note FROM audit_log_keys ORDER BY from_size`)
	if err != nil {
		return nil, fmt.Errorf("read log key transitions: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("read log key transitions: %w", err)
		}
		out = append(out, []byte(s))
	}
	return out, rows.Err()
}

// LoadKeyChain follows, from root, the transitions stored in the
// database. A stored statement that does not follow is an error: the
// table was changed by hand.
func LoadKeyChain(ctx context.Context, read *sql.DB, root note.Verifier) (*KeyChain, error) {
	msgs, err := ReadTransitions(ctx, read)
	if err != nil {
		return nil, err
	}
	c := NewKeyChain(root)
	if err := c.FollowAll(msgs); err != nil {
		return nil, fmt.Errorf("stored %w", err)
	}
	return c, nil
}
