package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// config returns a configuration for a fresh data directory on the run's
// engine: the SQLite file in the data directory, or a PostgreSQL schema
// of the test's own.
func config(t *testing.T) node.Config {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", "custos.test/log"
	if storetest.Engine() == storetest.Postgres {
		cfg.DB = storetest.DSN(t)
	}
	return cfg
}

// settle waits for the goroutine count to fall to at most want (stopped
// goroutines leave the count a moment after they return).
func settle(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func TestOpenServeCloseReopen(t *testing.T) {
	ctx := context.Background()
	cfg := config(t)
	before := runtime.NumGoroutine()
	op, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // a node opens again after it closed
		n, err := node.Open(ctx, cfg, node.Options{})
		if err != nil {
			t.Fatalf("open #%d: %v", round, err)
		}
		if got, want := n.DB.Queued, storetest.Engine() == storetest.Postgres; got != want {
			t.Errorf("DB.Queued = %v on %s", got, storetest.Engine())
		}
		if err := n.Listen(cfg.Addr); err != nil {
			n.Close()
			t.Fatal(err)
		}
		if !strings.HasPrefix(n.URL, "http://127.0.0.1:") {
			t.Errorf("URL = %q, want loopback", n.URL)
		}
		// One authenticated request, and the same one refused without the key.
		for _, c := range []struct {
			key  string
			want int
		}{{op, http.StatusOK}, {"", http.StatusUnauthorized}} {
			_, err := client.New(n.URL, client.WithKey(c.key), client.WithRetries(0, 0)).ListTenants(ctx, client.PageOptions{})
			status := http.StatusOK
			if ce := (*client.Error)(nil); errors.As(err, &ce) {
				status = ce.Status
			} else if err != nil {
				t.Fatal(err)
			}
			if status != c.want {
				t.Errorf("list tenants with key=%v: %d %v, want %d", c.key != "", status, err, c.want)
			}
		}
		if err := n.Log.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if n.Log.Size() == 0 {
			t.Error("no audit entries after an audited request")
		}
		http.DefaultClient.CloseIdleConnections()
		if err := n.Close(); err != nil {
			t.Fatalf("close #%d: %v", round, err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		// Every goroutine the node started has stopped: the API server,
		// notifier, detector, log sequencer and verifier, SQLite's
		// checkpointer, the database pools.
		if after := settle(before); after > before {
			buf := make([]byte, 1<<20)
			t.Fatalf("round %d: %d goroutines after close, %d before open:\n%s", round, after, before, buf[:runtime.Stack(buf, true)])
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		edit  func(*node.Config)
		field string
	}{
		{"no data directory", func(c *node.Config) { c.DataDir = "" }, "data:"},
		{"addr", func(c *node.Config) { c.Addr = "8750" }, "addr:"},
		{"db", func(c *node.Config) { c.DB = "mysql://x" }, "db:"},
		{"origin", func(c *node.Config) { c.Origin = "a b" }, "origin:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config(t)
			c.edit(&cfg)
			if _, err := node.Open(ctx, cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), c.field) {
				t.Errorf("Open: %v, want an error naming %q", err, c.field)
			}
			if _, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{}); err == nil || !strings.Contains(err.Error(), c.field) {
				t.Errorf("Init: %v, want an error naming %q", err, c.field)
			}
		})
	}
	// A directory that was never initialised is refused, naming the fix.
	cfg := config(t)
	if _, err := node.Open(ctx, cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), "run custos init") {
		t.Errorf("Open of an empty directory: %v, want it to say run custos init", err)
	}
	// Two configured sinks with one name.
	if _, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg, _ = node.ReadFile(cfg)
	if err := json.Unmarshal([]byte(`{"webhooks":[{"url":"http://127.0.0.1:1","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","name":"a"},{"url":"http://127.0.0.1:2","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","name":"a"}]}`), &cfg.Detection); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(ctx, cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), "detection") {
		t.Errorf("Open with two sinks named a: %v, want a detection error", err)
	}
}

// TestOneNodePerDataDirectory: a second node on a data directory whose
// SQLite database a running node holds is refused (two sequencers over
// one file would each overwrite the other's entries), as is a restore
// under it; a check beside the server (log verify --rows) opens it; and
// after the first node closes, the directory opens again.
func TestOneNodePerDataDirectory(t *testing.T) {
	if storetest.Engine() == storetest.Postgres {
		t.Skip("the lock guards the data directory's own SQLite file; PostgreSQL nodes share a database by design")
	}
	ctx := context.Background()
	cfg := initialised(t)
	var err error
	first, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(ctx, cfg, node.Options{}); !errors.Is(err, node.ErrDataDirInUse) {
		first.Close()
		t.Fatalf("second node on a held data directory: %v, want ErrDataDirInUse", err)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	if _, err := node.Backup(ctx, cfg, backup); err != nil { // online backups are fine
		t.Fatal(err)
	}
	if _, err := node.Restore(ctx, cfg, backup); !errors.Is(err, node.ErrDataDirInUse) {
		t.Fatalf("restore under a running node: %v, want ErrDataDirInUse", err)
	}
	beside, err := node.Open(ctx, cfg, node.Options{BesideServer: true})
	if err != nil {
		t.Fatalf("a check beside the server: %v", err)
	}
	beside.Close()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	again.Close()
	if _, err := node.Restore(ctx, cfg, backup); err != nil {
		t.Fatalf("restore of a stopped node's backup: %v", err)
	}
}

// initialised returns the configuration of a fresh data directory that
// node.Init made (the operator key it printed is not kept), as read back
// from its custos.json.
func initialised(t *testing.T) node.Config {
	t.Helper()
	cfg, _ := initialisedOp(t)
	return cfg
}

// initialisedOp is [initialised] that also returns the first operator's
// key.
func initialisedOp(t *testing.T) (node.Config, string) {
	t.Helper()
	cfg := config(t)
	op, err := node.Init(context.Background(), cfg, "operator@vendor.test", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg, op
}
