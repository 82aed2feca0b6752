package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
)

// TestBackupUnderLoadRestoreVerify: custos backup copies the SQLite
// database while contacts are being added; each copy's log verifies; a
// restore of the newer copy brings back a log that verifies with its rows
// and the contacts it recorded; a restore of the older copy — older than
// the log the data directory has seen since — is refused, not silent, and
// the same holds for a copy put in place by hand (the server's own log
// verifier names the rollback at start).
func TestBackupUnderLoadRestoreVerify(t *testing.T) {
	ctx := context.Background()
	c := initialised(t)
	srv := startServer(t, c.dir)
	running := true
	defer func() {
		if running {
			srv.Close()
		}
	}()
	c.env["CUSTOS_SERVER"], c.env["CUSTOS_KEY"] = srv.URL, c.op
	tenant, admin := c.tenant("Acme")
	list := idRE("ls").FindString(c.mustAs(admin, "list", "create", "--tenant", tenant, "news"))
	api := client.New(srv.URL, client.WithKey(admin))

	var added atomic.Int64
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := api.CreateContact(ctx, tenant, list, custos.CreateContactRequest{Email: fmt.Sprintf("c%d@example.test", i)}); err != nil {
				done <- err
				return
			}
			added.Add(1)
		}
	}()
	waitFor := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); added.Load() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d contacts added", added.Load())
			}
		}
	}
	dir := t.TempDir()
	older, newer := filepath.Join(dir, "older.db"), filepath.Join(dir, "newer.db")
	waitFor(10)
	if out := c.must("backup", "--out", older); !strings.Contains(out, "verified up to the checkpoint of size") {
		t.Fatalf("backup:\n%s", out)
	}
	waitFor(added.Load() + 30)
	c.must("backup", "--out", newer)
	atNewer := added.Load()
	waitFor(atNewer + 5) // the server goes on past the newer backup
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("backup", "--out", newer); err == nil {
		t.Fatal("backup overwrote an existing file")
	}
	if st, err := os.Stat(newer); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode: %v %v", st.Mode(), err)
	}
	// Let the server's verifier keep a checkpoint past the newer backup.
	time.Sleep(2500 * time.Millisecond)
	// A restore under the running server is refused before it reads the
	// backup: the server would go on writing to the file it replaced.
	if out, err := c.run("restore", newer); err == nil || !strings.Contains(err.Error(), "another custos process holds this data directory") {
		t.Fatalf("restore under a running server: %v\n%s", err, out)
	}
	srv.Close()
	running = false

	// The older backup is refused, and nothing is changed.
	before, _ := os.ReadFile(filepath.Join(c.dir, "custos.db"))
	out, err := c.run("restore", older)
	if err == nil || !strings.Contains(err.Error(), "older than the log this data directory has seen") || !strings.Contains(err.Error(), "would drop") {
		t.Fatalf("restore of the older backup: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(c.dir, "custos.db")); string(after) != string(before) {
		t.Fatal("a refused restore changed the database")
	}
	// --check-db says the same of a copy.
	if _, err := c.run("restore", "--check-db", older); err == nil {
		t.Fatal("restore --check-db accepted the older backup")
	}

	// The newer one is refused too: the server went on past it and its
	// verifier kept that checkpoint (an operator restoring it loses
	// entries tenants hold proofs of).
	if _, err := c.run("restore", newer); err == nil {
		t.Fatal("restore accepted a backup older than the log seen")
	}

	// A backup taken of the stopped server is the newest state: restore
	// it over a database that lost its file, and everything verifies.
	newest := filepath.Join(dir, "newest.db")
	c.must("backup", "--out", newest)
	if err := os.Remove(filepath.Join(c.dir, "custos.db")); err != nil {
		t.Fatal(err)
	}
	out = c.must("restore", newest)
	if !strings.Contains(out, "contains the checkpoint of size") {
		t.Fatalf("restore:\n%s", out)
	}
	srv = startServer(t, c.dir)
	running = true
	c.env["CUSTOS_SERVER"] = srv.URL
	c.env["CUSTOS_KEK"] = ""
	c.must("log", "verify", "--rows")
	seen := map[string]bool{}
	for after := ""; ; {
		page, err := client.New(srv.URL, client.WithKey(admin)).ListContacts(ctx, tenant, list, client.PageOptions{After: after, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range page.Items {
			if strings.HasSuffix(ct.Email, "@example.test") {
				seen[ct.Email] = true
			}
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if int64(len(seen)) != added.Load() {
		t.Fatalf("restored %d contacts, %d were added", len(seen), added.Load())
	}
	srv.Close()
	running = false

	// Putting the older copy in place by hand is not silent either: the
	// server's log verifier finds the rollback when it starts.
	raw, _ := os.ReadFile(older)
	os.Remove(filepath.Join(c.dir, "custos.db-wal"))
	os.Remove(filepath.Join(c.dir, "custos.db-shm"))
	if err := os.WriteFile(filepath.Join(c.dir, "custos.db"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Addr = c.dir, "127.0.0.1:0"
	cfg, _ = reloadConfig(cfg)
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err) // the server starts, to say why it is not well
	}
	ierr := n.Log.Integrity()
	n.Close()
	if ierr == nil || !strings.Contains(ierr.Error(), "rolled back") {
		t.Fatalf("a hand-restored older copy: integrity %v", ierr)
	}
}
