package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
)

func openNode(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL: the node sequences once it holds the leader lock.
	for deadline := time.Now().Add(10 * time.Second); !n.Log.IsLeader(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node did not become the sequencer within 10 s")
		}
	}
	return n
}

// TestRotateLogKeyNode rotates the log's key on a node: the entry, the
// announcement, the files, a reopen with the new key, log.pub still the
// trust root; and the node refuses to open with the retired key.
func TestRotateLogKeyNode(t *testing.T) {
	ctx := context.Background()
	cfg := initialised(t)
	root := mustRead(t, cfg.Path("log.pub"))
	oldKey := mustRead(t, cfg.Path("log.key"))
	n := openNode(t, cfg)
	tr, err := n.RotateLogKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !hasEntry(t, n, audit.ActionLogKeyRotate, "custos.dev/log-key-transition/v1") {
		t.Fatal("no log.key.rotate entry")
	}
	var topic string
	if err := n.DB.Read.QueryRowContext(ctx, `SELECT topic FROM outbox WHERE topic = 'log.key.rotated'`).Scan(&topic); err != nil {
		t.Fatalf("rotation not announced: %v", err)
	}
	if _, err := n.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	n.Close()
	if got := mustRead(t, cfg.Path("log.pub")); got != root {
		t.Fatal("log.pub changed: it is the verifiers' trust root")
	}
	newKey := mustRead(t, cfg.Path("log.key"))
	if newKey == oldKey || !strings.Contains(tr.NewKey, cfg.Origin) {
		t.Fatal("log.key was not replaced by the new key")
	}
	if _, err := os.Stat(cfg.Path("log.next.key")); !os.IsNotExist(err) {
		t.Fatal("log.next.key left behind")
	}
	n = openNode(t, cfg)
	cp, err := n.Log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size < tr.FromSize {
		t.Fatalf("checkpoint %d before the new key's start %d", cp.Size, tr.FromSize)
	}
	n.Close()
	// The retired key put back as log.key: refused (fail closed).
	if err := os.WriteFile(cfg.Path("log.key"), []byte(oldKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(ctx, cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), "not the log's current signing key") {
		t.Fatalf("opened with the retired log.key: %v", err)
	}
	os.WriteFile(cfg.Path("log.key"), []byte(newKey), 0o600)
	// The operator-side verifier goes from log.pub through the rotation.
	db, err := node.OpenDB(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, db.Read, v, audit.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRotateLogKeyCrash: a crash before the statement rolls back (the old
// key goes on); a crash after it completes at the next start.
func TestRotateLogKeyCrash(t *testing.T) {
	ctx := context.Background()
	cfg := initialised(t)
	oldKey := mustRead(t, cfg.Path("log.key"))

	n := openNode(t, cfg)
	n.SetRotateCrash(true, false)
	if _, err := n.RotateLogKey(ctx); err == nil {
		t.Fatal("the crash hook did not stop the rotation")
	}
	n.Close()
	if _, err := os.Stat(cfg.Path("log.next.key")); err != nil {
		t.Fatal("the crash left no log.next.key to settle")
	}
	n = openNode(t, cfg)
	if _, err := os.Stat(cfg.Path("log.next.key")); !os.IsNotExist(err) {
		t.Fatal("log.next.key of a rotation that never committed is still there")
	}
	if mustRead(t, cfg.Path("log.key")) != oldKey || n.Log.Keys().Rotated() {
		t.Fatal("a rotation that never committed changed the key")
	}

	n.SetRotateCrash(false, true)
	tr, err := n.RotateLogKey(ctx)
	if err == nil || tr == nil {
		t.Fatalf("the crash hook did not stop after the statement: %v", err)
	}
	n.Close()
	if mustRead(t, cfg.Path("log.key")) != oldKey {
		t.Fatal("files swapped despite the crash")
	}
	n = openNode(t, cfg)
	defer n.Close()
	if mustRead(t, cfg.Path("log.key")) == oldKey {
		t.Fatal("the start did not complete the rotation")
	}
	matches, _ := filepath.Glob(cfg.Path("log.retired-*.key"))
	if len(matches) != 1 || mustRead(t, matches[0]) != oldKey {
		t.Fatalf("retired key files %v", matches)
	}
	if _, err := n.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
