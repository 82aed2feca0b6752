package main

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
)

// TestLogRotateKeyCLI: `custos log rotate-key` on the host (and its
// spelling `keys rotate --log`). log verify --state before and after
// follows the rotation from log.pub; log checkpoint reads the new key's
// checkpoint; witness-config prints the new key under the same origin;
// log.pub is unchanged.
func TestLogRotateKeyCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	state := filepath.Join(t.TempDir(), "state.json")
	c := &cli{t: t, env: map[string]string{"CUSTOS_DATA": dir}, dir: dir, seen: map[string]bool{}}
	c.must("init")
	pub, _ := os.ReadFile(filepath.Join(dir, "log.pub"))
	c.must("log", "verify", "--state", state)
	out := c.must("log", "rotate-key")
	if !strings.Contains(out, "rotated the log's signing key") {
		t.Fatalf("rotate-key: %s", out)
	}
	out = c.must("keys", "rotate", "--log")
	if !strings.Contains(out, "rotated the log's signing key") {
		t.Fatalf("keys rotate --log: %s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "log.pub")); string(b) != string(pub) {
		t.Fatal("log.pub changed")
	}
	if out := c.must("log", "verify", "--state", state); !strings.Contains(out, "log verified") {
		t.Fatalf("incremental verify across the rotation: %s", out)
	}
	b, _ := os.ReadFile(state)
	if !strings.Contains(string(b), "log_keys") {
		t.Fatal("the state does not remember the rotations it followed")
	}
	c.must("log", "verify")
	c.must("log", "checkpoint")
	// An offline proof made after the rotations: refused with the old
	// key alone, verified with the old key and the statements.
	proof := filepath.Join(t.TempDir(), "e.tlog-proof")
	c.must("log", "proof", "--index", "0", "--out", proof)
	oldPub := filepath.Join(t.TempDir(), "old.pub")
	os.WriteFile(oldPub, pub, 0o644)
	if out, err := c.run("verify-proof", proof, "--log-key", oldPub); err == nil {
		t.Fatalf("a proof signed by the new key verified with the old key alone:\n%s", out)
	}
	db, err := node.OpenDB(context.Background(), mustConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := audit.ReadTransitions(context.Background(), db.Read)
	db.Close()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d transitions: %v", len(msgs), err)
	}
	var list []byte
	for _, m := range msgs {
		list = append(list, base64.StdEncoding.EncodeToString(m)+"\n"...)
	}
	keysFile := filepath.Join(t.TempDir(), "log-keys.txt")
	os.WriteFile(keysFile, list, 0o644)
	c.must("verify-proof", proof, "--log-key", oldPub, "--log-keys", keysFile)
	// Only the later statement (the first one left out): not followed.
	os.WriteFile(keysFile, []byte(base64.StdEncoding.EncodeToString(msgs[1])+"\n"), 0o644)
	if out, err := c.run("verify-proof", proof, "--log-key", oldPub, "--log-keys", keysFile); err == nil {
		t.Fatalf("a statement signed by a key the chain had not reached was followed:\n%s", out)
	}
	wc := c.must("log", "witness-config")
	if !strings.Contains(wc, "was rotated") || strings.Contains(wc, "vkey: "+strings.TrimSpace(string(pub))) {
		t.Fatalf("witness-config does not give the key in force:\n%s", wc)
	}
}

// TestRotationFollowedByWatchAndPull: a tenant's `audit pull` and a
// `log watch` holding only the old log.pub follow a rotation done on the
// running node, across runs with their state files; neither accepts a
// checkpoint signed by the retired key past the rotation.
func TestRotationFollowedByWatchAndPull(t *testing.T) {
	ctx := context.Background()
	c := initialised(t)
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Addr = c.dir, "127.0.0.1:0"
	cfg, err := reloadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewMain().startServer(ctx, cfg, nil, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c.env["CUSTOS_SERVER"], c.env["CUSTOS_KEY"] = n.URL, c.op
	pub := filepath.Join(c.dir, "log.pub")
	oldPub, _ := os.ReadFile(pub)
	oldPubFile := filepath.Join(t.TempDir(), "old.pub")
	os.WriteFile(oldPubFile, oldPub, 0o644)
	tenant, adminKey := c.tenant("Acme")
	pullState := filepath.Join(t.TempDir(), "pull.json")
	watchState := filepath.Join(t.TempDir(), "watch.cp")
	pull := func() (string, error) {
		if _, err := n.Log.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		return c.runAs(adminKey, "audit", "pull", "--tenant", tenant, "--log-key", oldPubFile, "--state", pullState)
	}
	watch := func() (string, error) {
		return c.run("log", "watch", n.URL, "--log-key", oldPubFile, "--state", watchState, "--once")
	}
	if out, err := pull(); err != nil {
		t.Fatalf("pull before the rotation: %v\n%s", err, out)
	}
	if out, err := watch(); err != nil {
		t.Fatalf("watch before the rotation: %v\n%s", err, out)
	}
	if _, err := n.RotateLogKey(ctx); err != nil {
		t.Fatal(err)
	}
	c.mustAs(adminKey, "list", "create", "--tenant", tenant, "after")
	if out, err := pull(); err != nil {
		t.Fatalf("pull after the rotation, with the old key: %v\n%s", err, out)
	}
	if out, err := watch(); err != nil {
		t.Fatalf("watch after the rotation, with the old key: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(pullState)
	if !strings.Contains(string(b), "log_keys") {
		t.Fatal("the pull state does not keep the statements it followed")
	}
	// A second run, from the states alone.
	if out, err := pull(); err != nil {
		t.Fatalf("second pull: %v\n%s", err, out)
	}
	if out, err := watch(); err != nil {
		t.Fatalf("second watch: %v\n%s", err, out)
	}
	// The old key alone, without the statements, refuses the new
	// checkpoint (fail closed).
	cp, err := n.Log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := loadVerifier(oldPubFile)
	if _, err := audit.ParseCheckpoint(cp.Note, v); err == nil {
		t.Fatal("the retired key verifies the new checkpoint")
	}
}

func mustConfig(t *testing.T, dir string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg, err := reloadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
