package node_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
)

// syncBuffer is a bytes.Buffer the node's goroutines may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPrivilegedKeyExpiryWarned: an operator key ending within a week is
// counted by the metric hook, warned about in the server log (ids and
// time, never the holder's address) and announced once as key.expiring.
func TestPrivilegedKeyExpiryWarned(t *testing.T) {
	ctx := context.Background()
	cfg, op := initialisedOp(t)
	var logs syncBuffer
	n, err := node.Open(ctx, cfg, node.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if all, priv, err := n.KeysExpiringSoon(ctx); err != nil || all != 0 || priv != 0 {
		t.Fatalf("a fresh install: %d/%d expiring, %v", all, priv, err)
	}
	if err := n.Listen(cfg.Addr); err != nil {
		t.Fatal(err)
	}
	api := client.New(n.URL, client.WithKey(op))
	ps, err := api.ListPrincipals(ctx, client.PageOptions{})
	if err != nil || len(ps.Items) != 1 {
		t.Fatalf("principals: %v", err)
	}
	k, err := api.CreateKey(ctx, ps.Items[0].ID, custos.KeyRequest{ExpiresIn: "72h"})
	if err != nil {
		t.Fatal(err)
	}
	if all, priv, err := n.KeysExpiringSoon(ctx); err != nil || all != 1 || priv != 1 {
		t.Fatalf("a 3-day operator key: %d/%d expiring, %v", all, priv, err)
	}
	// Only the log's leader announces; on PostgreSQL the node takes the
	// lead shortly after it opens (CI once ran Lifecycle before that).
	for deadline := time.Now().Add(30 * time.Second); !n.Log.IsLeader(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node never took the log's lead")
		}
	}
	n.Lifecycle(ctx)
	out := logs.String()
	if !strings.Contains(out, "privileged API key expires soon") || !strings.Contains(out, k.Key.ID) || strings.Contains(out, "operator@vendor.test") {
		t.Fatalf("server log:\n%s", out)
	}
	n.Log.Sync(ctx)
	var c int
	if err := n.DB.Read.QueryRow(`SELECT count(*) FROM audit_leaves WHERE action = 'key.expiring'`).Scan(&c); err != nil || c != 1 {
		t.Fatalf("key.expiring entries: %d, %v", c, err)
	}
}
