package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/keys"
)

// TestKeysRewrapKEKCLI: `custos keys rewrap-kek` as an operator runs it on
// the host. It refuses a --to that is not the configured kek; with the new
// KEK as kek and the old as kek_previous it re-wraps the system keysets,
// again with nothing left to do; then the data directory opens with the
// new KEK alone (every row MAC checks under the re-wrapped rows key) and
// no longer with the old one.
func TestKeysRewrapKEKCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := &cli{t: t, env: map[string]string{"CUSTOS_DATA": dir}, dir: dir, seen: map[string]bool{}}
	c.must("init")
	newURI, err := keys.CreateLocalKEK(filepath.Join(t.TempDir(), "kek-2.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "custos.json")
	var f map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	oldURI := f["kek"].(string)
	write := func() {
		b, _ := json.Marshal(f)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := c.run("keys", "rewrap-kek", "--to", newURI); err == nil || !strings.Contains(out+err.Error(), "kek_previous") {
		t.Fatalf("--to other than the configured kek: %v\n%s", err, out)
	}
	f["kek"], f["kek_previous"] = newURI, oldURI
	write()
	out := c.must("keys", "rewrap-kek", "--to", newURI)
	if !strings.Contains(out, "re-wrapped 0 tenant keysets and ") || strings.Contains(out, "and 0 system") || !strings.Contains(out, `remove "kek_previous"`) {
		t.Fatalf("first run: %s", out)
	}
	if out := c.must("keys", "rewrap-kek", "--to", newURI); !strings.Contains(out, "re-wrapped 0 tenant keysets and 0 system keysets") {
		t.Fatalf("second run (nothing left): %s", out)
	}
	delete(f, "kek_previous")
	write()
	if out := c.must("log", "verify", "--rows"); !strings.Contains(out, "data OK") {
		t.Fatalf("new KEK alone: %s", out)
	}
	f["kek"] = oldURI
	write()
	if out, err := c.run("log", "verify", "--rows"); err == nil {
		t.Fatalf("the old KEK alone still opens the data directory:\n%s", out)
	}
}
