package audit_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

func newKey(t testing.TB) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, vkey
}

// forgeCP signs a checkpoint body of the log with s.
func forgeCP(t *testing.T, s note.Signer, cp *audit.Checkpoint) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]))}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestLogKeyRotation(t *testing.T) {
	ctx := context.Background()
	e := newLog(t)
	e.append(t, 5, "tn_a")
	before := e.sign(t)
	next, nextV, nextVKey := newKey(t)

	tr, r, err := e.log.RotateKey(ctx, next, nextVKey, audit.Leaf{Actor: "op_x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.FromSize != before.Size+1 || r.Index != before.Size || tr.NewKey != nextVKey {
		t.Fatalf("transition from %d at entry %d, want from %d at %d", tr.FromSize, r.Index, before.Size+1, before.Size)
	}
	// The checkpoint covering the statement is signed by the new key
	// alone, at once.
	cp, err := e.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != tr.FromSize {
		t.Fatalf("latest checkpoint size %d, want %d", cp.Size, tr.FromSize)
	}
	if _, err := audit.ParseCheckpoint(cp.Note, e.verifier); err == nil {
		t.Fatal("the old key alone verified a checkpoint signed after the rotation")
	}
	if _, err := audit.ParseCheckpoint(cp.Note, nextV); err != nil {
		t.Fatal(err)
	}
	e.append(t, 4, "tn_a")
	after := e.sign(t)

	// The entry records the statement.
	st, err := audit.ReadEntry(ctx, e.db.Read, r.Index)
	if err != nil {
		t.Fatal(err)
	}
	body := st.Data
	var lf audit.Leaf
	if err := jsonUnmarshal(body, &lf); err != nil || lf.Action != audit.ActionLogKeyRotate || lf.Detail != string(tr.Note) {
		t.Fatalf("rotation entry %s (%v)", body, err)
	}

	// A verifier holding only the old key follows the stored statement.
	stored, err := audit.ReadTransitions(ctx, e.db.Read)
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored transitions %d (%v)", len(stored), err)
	}
	chain := audit.NewKeyChain(e.verifier)
	if err := chain.FollowAll(stored); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*audit.Checkpoint{before, cp, after} {
		if _, err := audit.ParseCheckpoint(c.Note, chain); err != nil {
			t.Fatalf("checkpoint of size %d: %v", c.Size, err)
		}
	}
	// Someone holding only the old log.key cannot sign a checkpoint the
	// chain accepts at a size the new key signs — not even the true tree.
	oldSigner := e.cfg.Signer
	for _, c := range []*audit.Checkpoint{cp, after} {
		if _, err := audit.ParseCheckpoint(forgeCP(t, oldSigner, c), chain); err == nil {
			t.Fatalf("a checkpoint of size %d signed by the retired key was accepted", c.Size)
		}
	}
	// Nor add a transition of their own: it is not signed by the
	// current key.
	third, _, thirdVKey := newKey(t)
	bad, err := audit.SignTransition(oldSigner, third, thirdVKey, after.Size+1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain.Clone().Follow(bad); err == nil {
		t.Fatal("a transition signed by the retired key was followed")
	}
	// The new key signing a later checkpoint is fine; the old one's
	// history before the rotation stays valid.
	if _, err := audit.ParseCheckpoint(forgeCP(t, oldSigner, before), chain); err != nil {
		t.Fatalf("pre-rotation checkpoint: %v", err)
	}

	// The whole log verifies from the old key, and the state remembers
	// the rotation.
	rep, err := audit.Verify(ctx, e.db.Read, e.verifier, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.CheckpointSize != after.Size || len(rep.State.LogKeys) != 1 {
		t.Fatalf("verified to %d with %d transitions", rep.CheckpointSize, len(rep.State.LogKeys))
	}
	// A second rotation, from the new key.
	_, _, err = e.log.RotateKey(ctx, third, thirdVKey, audit.Leaf{Actor: "op_x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.append(t, 2, "tn_a")
	e.sign(t)
	rep2, err := audit.VerifyFrom(ctx, e.db.Read, e.verifier, rep.State, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep2.State.LogKeys) != 2 {
		t.Fatalf("state holds %d transitions, want 2", len(rep2.State.LogKeys))
	}
}

// TestLogKeyRotationHiddenOrRolledBack: a database that later hides the
// rotation (its row and entry removed, checkpoints re-signed with the old
// key) is refused by a verifier that followed the rotation.
func TestLogKeyRotationHiddenOrRolledBack(t *testing.T) {
	ctx := context.Background()
	e := newLog(t)
	e.append(t, 3, "tn_a")
	next, _, nextVKey := newKey(t)
	if _, _, err := e.log.RotateKey(ctx, next, nextVKey, audit.Leaf{Actor: "op_x"}, nil); err != nil {
		t.Fatal(err)
	}
	e.append(t, 3, "tn_a")
	e.sign(t)
	rep, err := audit.Verify(ctx, e.db.Read, e.verifier, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.log.Close()
	// The insider holding only the old log.key: drop the statement and
	// re-sign every checkpoint with the old key.
	if _, err := e.db.Write.ExecContext(ctx, `DELETE FROM audit_log_keys`); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Read.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints`)
	if err != nil {
		t.Fatal(err)
	}
	type re struct {
		size int64
		note []byte
	}
	var resign []re
	for rows.Next() {
		var x re
		if err := rows.Scan(&x.size, &x.note); err != nil {
			t.Fatal(err)
		}
		resign = append(resign, x)
	}
	rows.Close()
	for _, x := range resign {
		text, _, _ := strings.Cut(string(x.note), "\n\n")
		msg, err := note.Sign(&note.Note{Text: text + "\n"}, e.cfg.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Write.ExecContext(ctx, `UPDATE audit_checkpoints SET note = $1 WHERE size = $2`, msg, x.size); err != nil {
			t.Fatal(err)
		}
	}
	// A verifier with only the root sees a consistent old-key log (it
	// never learnt of the rotation) — but one that followed it refuses.
	if _, err := audit.VerifyFrom(ctx, e.db.Read, e.verifier, rep.State, audit.VerifyOptions{}); err == nil {
		t.Fatal("a log hiding its key rotation verified against a state that followed it")
	}
	// With the statement gone, the new key is no longer the chain's
	// current key: a node holding it refuses to open (fail closed).
	_, err = audit.Open(ctx, e.db.Read, e.db.Write, audit.Config{Origin: origin, Signer: next, Verifier: e.verifier, Placeholders: e.db.Placeholders, VerifyInterval: -1})
	if err == nil {
		t.Fatal("a signer that is not the chain's current key opened the log")
	}
}

// TestLogKeyRotationRefusals: a statement not signed by the current key,
// a reused key, a size not past the current key's start, another origin.
func TestLogKeyRotationRefusals(t *testing.T) {
	root, rootV, rootVKey := newKey(t)
	k1, _, k1V := newKey(t)
	k2, _, k2V := newKey(t)
	other, _, _ := newKey(t)
	now := time.Now()
	sign := func(old, next note.Signer, vkey string, from uint64) []byte {
		t.Helper()
		m, err := audit.SignTransition(old, next, vkey, from, now)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	good := sign(root, k1, k1V, 10)
	for name, msg := range map[string][]byte{
		"signed by a stranger": sign(other, k1, k1V, 10),
		"size zero":            sign(root, k1, k1V, 0),
		"not signed by new": func() []byte {
			m, _ := note.Sign(&note.Note{Text: strings.SplitN(string(good), "\n\n", 2)[0] + "\n"}, root)
			return m
		}(),
	} {
		if _, err := audit.NewKeyChain(rootV).Follow(msg); err == nil {
			t.Errorf("%s: followed", name)
		}
	}
	c := audit.NewKeyChain(rootV)
	if _, err := c.Follow(good); err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string][]byte{
		"signed by the previous key": sign(root, k2, k2V, 20),
		"size not past the start":    sign(k1, k2, k2V, 10),
		"reuses the root":            sign(k1, root, rootVKey, 20),
	} {
		if _, err := c.Clone().Follow(msg); err == nil {
			t.Errorf("%s: followed", name)
		}
	}
	if _, err := c.Follow(sign(k1, k2, k2V, 20)); err != nil {
		t.Fatal(err)
	}
	if got := c.At(15).KeyHash(); got != k1.KeyHash() {
		t.Errorf("At(15) is not the first rotated key")
	}
}

// TestLogKeyRotationQueued: with several nodes, the leader rotates; a
// node that is not the sequencer refuses; after the rotation the old
// leader's successor, holding only the retired log.key, does not lead.
func TestLogKeyRotationQueued(t *testing.T) {
	ctx := context.Background()
	logs, db, e := queuedNodes(t, 2)
	lead := waitLeader(t, logs)
	other := logs[1-lead]
	next, _, nextVKey := newKey(t)
	if _, _, err := other.RotateKey(ctx, next, nextVKey, audit.Leaf{Actor: "op_x"}, nil); err != audit.ErrNotSequencer {
		t.Fatalf("rotation on a follower: %v, want ErrNotSequencer", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := other.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_q")}); err != nil {
			t.Fatal(err)
		}
	}
	tr, _, err := logs[lead].RotateKey(ctx, next, nextVKey, audit.Leaf{Actor: "op_x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := other.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_q")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := logs[lead].Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := logs[lead].SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	chain := audit.NewKeyChain(e.verifier)
	stored, err := audit.ReadTransitions(ctx, db.Read)
	if err != nil || chain.FollowAll(stored) != nil || len(stored) != 1 || tr.FromSize == 0 {
		t.Fatalf("transitions %d: %v", len(stored), err)
	}
	cp, err := audit.ReadCheckpoint(ctx, db.Read, chain)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size < tr.FromSize+3 {
		t.Fatalf("latest checkpoint %d does not cover the entries after the rotation (from %d)", cp.Size, tr.FromSize)
	}
	if _, err := audit.ParseCheckpoint(cp.Note, e.verifier); err == nil {
		t.Fatal("the retired key verifies the latest checkpoint")
	}
	if _, err := audit.Verify(ctx, db.Read, e.verifier, audit.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	// The follower's log.key is the retired one: when the leader goes,
	// it must not take over and sign with it.
	logs[lead].Close()
	time.Sleep(300 * time.Millisecond) // several LeaderPolls (50 ms): a bound on a negative, not a timing assertion
	if other.IsLeader() {
		t.Fatal("a node holding the retired log.key became the sequencer")
	}
	// It keeps trying to lead, and failing; it must still stop when
	// closed (it once retried for ever once its stop was closed).
	closed := make(chan error, 1)
	go func() { closed <- other.Close() }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("Close of a node that cannot lead did not return")
	}
}
