package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	wc := c.must("log", "witness-config")
	if !strings.Contains(wc, "was rotated") || strings.Contains(wc, "vkey: "+strings.TrimSpace(string(pub))) {
		t.Fatalf("witness-config does not give the key in force:\n%s", wc)
	}
}
