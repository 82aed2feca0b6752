package node_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
)

// TestPostgresDumpRestoreVerified is the PostgreSQL backup procedure of
// docs/backup.md, run for real: pg_dump of a live node's database,
// restored with psql into a fresh database, checked with CheckRestored
// (its log verifies and contains the newest checkpoint the data directory
// has seen) and served by a node that reads the same tenants. A dump
// older than the log seen since is refused.
func TestPostgresDumpRestoreVerified(t *testing.T) {
	base := storetest.PostgresURL(t)
	for _, tool := range []string{"pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := context.Background()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", "custos.test/log"
	cfg.DB = storetest.NewSchema(t, base)
	schema := mustURL(t, cfg.DB).Query().Get("search_path")
	op, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Listen(cfg.Addr); err != nil {
		t.Fatal(err)
	}
	api := client.New(n.URL, client.WithKey(op))
	create := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := api.CreateTenant(ctx, custos.CreateTenantRequest{Name: fmt.Sprintf("T%d", i), AdminEmail: fmt.Sprintf("a%d@t.test", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create(0, 5)
	// pg_dump takes one snapshot: a consistent dump while the node serves.
	older := dump(t, base, schema)
	create(5, 10)
	waitVerified(t, cfg, n)
	newer := dump(t, base, schema)

	// The newer dump restores, checks and serves the same tenants.
	restored := restoreInto(t, base, schema, newer)
	rep, err := node.CheckRestored(ctx, cfg, restored)
	if err != nil {
		t.Fatalf("check the restored dump: %v", err)
	}
	if rep.Entries == 0 || rep.CheckpointSize == 0 {
		t.Fatalf("report %+v", rep)
	}
	rcfg := cfg
	rcfg.DB = restored
	rcfg.DataDir = filepath.Join(t.TempDir(), "restored")
	copyDataDir(t, cfg.DataDir, rcfg.DataDir)
	n.Close()
	rn, err := node.Open(ctx, rcfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()
	if err := rn.Log.Integrity(); err != nil {
		t.Fatalf("restored log: %v", err)
	}
	if _, err := audit.Verify(ctx, rn.DB.Read, mustVerifier(t, rcfg), audit.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := rn.Listen(rcfg.Addr); err != nil {
		t.Fatal(err)
	}
	page, err := client.New(rn.URL, client.WithKey(op)).ListTenants(ctx, client.PageOptions{Limit: 100})
	if err != nil || len(page.Items) != 10 {
		t.Fatalf("restored tenants: %d, %v", len(page.Items), err)
	}

	// The older dump is refused: the data directory saw a later checkpoint.
	old := restoreInto(t, base, schema, older)
	if _, err := node.CheckRestored(ctx, cfg, old); !errors.Is(err, node.ErrRollback) {
		t.Fatalf("an older dump: %v, want ErrRollback", err)
	}
	// node.Backup and node.Restore say PostgreSQL is pg_dump's.
	if _, err := node.Backup(ctx, cfg, filepath.Join(t.TempDir(), "b.db")); err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("Backup on PostgreSQL: %v", err)
	}
}

// waitVerified waits until the node's log verifier has kept a checkpoint
// covering the whole log in the data directory.
func waitVerified(t *testing.T, cfg node.Config, n *node.Node) {
	t.Helper()
	v := mustVerifier(t, cfg)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(cfg.Path(node.VerifiedFile))
		if err != nil {
			continue
		}
		if cp, err := audit.ParseCheckpoint(b, v); err == nil && cp.Size >= n.Log.Size() {
			return
		}
	}
	t.Fatal("the verifier kept no checkpoint covering the log")
}

func mustVerifier(t *testing.T, cfg node.Config) interface {
	Name() string
	KeyHash() uint32
	Verify(msg, sig []byte) bool
} {
	t.Helper()
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// dump runs pg_dump of schema, as docs/backup.md says.
func dump(t *testing.T, base, schema string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "custos.sql")
	cmd := exec.Command("pg_dump", "--no-owner", "--no-privileges", "--schema="+schema, "--file="+out, "--dbname="+libpqURL(t, base))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, b)
	}
	return out
}

// restoreInto creates a fresh database, loads file with psql and returns
// a URL for the node that uses schema in it; the database is dropped when
// t ends.
func restoreInto(t *testing.T, base, schema, file string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "custos_restore_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err == nil {
			a.Exec(`DROP DATABASE ` + name + ` WITH (FORCE)`)
			a.Close()
		}
	})
	u := mustURL(t, libpqURL(t, base))
	u.Path = "/" + name
	cmd := exec.Command("psql", "--quiet", "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--single-transaction", "--file="+file, "--dbname="+u.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// libpqURL drops the pgx-only parameters from a URL for the libpq tools.
func libpqURL(t *testing.T, s string) string {
	u := mustURL(t, s)
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	return u.String()
}

// copyDataDir copies the key files a restored node needs (not the
// database, which is the restored one).
func copyDataDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
