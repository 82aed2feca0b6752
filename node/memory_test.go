package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/vault"
)

// TestMemoryConfig: custos.json's memory section sizes the SQLite handle
// of the node that reads it (one budget: half the writer's, the rest
// shared by the readers), the Go heap's soft limit is what is left of
// limit_mib, and a section that leaves the heap too little, or names
// nonsense, is refused at start naming the key.
func TestMemoryConfig(t *testing.T) {
	ctx := context.Background()
	if lim, ok := (node.MemoryConfig{}).GoLimit(); !ok || lim != (256-64-48)<<20 {
		t.Errorf("default soft limit = %d MiB, %v; want %d MiB", lim>>20, ok, 256-64-48)
	}
	if _, ok := (node.MemoryConfig{LimitMiB: -1}).GoLimit(); ok {
		t.Error("limit_mib -1 still sets a soft limit")
	}
	if lim, _ := (node.MemoryConfig{LimitMiB: 512, CacheMiB: 128, MmapMiB: 64}).GoLimit(); lim != (512-128-64-48)<<20 {
		t.Errorf("soft limit = %d MiB, want %d", lim>>20, 512-128-64-48)
	}
	// A bulk job's writer cache beyond the writer's half of cache_mib
	// comes off the heap; one within it costs nothing more.
	if lim, _ := (node.MemoryConfig{LimitMiB: 448, BulkCacheMiB: 128}).GoLimit(); lim != (448-64-2*(128-32)-48)<<20 {
		t.Errorf("soft limit with bulk_cache_mib 128 = %d MiB, want %d", lim>>20, 448-64-2*(128-32)-48)
	}
	if lim, _ := (node.MemoryConfig{BulkCacheMiB: 16}).GoLimit(); lim != (256-64-48)<<20 {
		t.Errorf("soft limit with bulk_cache_mib 16 = %d MiB, want %d", lim>>20, 256-64-48)
	}

	cfg := initialised(t)
	b, err := os.ReadFile(cfg.Path(node.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	write := func(mem map[string]any) {
		t.Helper()
		f["memory"] = mem
		b, _ := json.Marshal(f)
		if err := os.WriteFile(cfg.Path(node.ConfigFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		mem  map[string]any
		want string
	}{
		{map[string]any{"limit_mib": 128}, "memory.limit_mib: 128 MiB leaves 16 MiB"},
		{map[string]any{"limit_mib": 256, "cache_mib": 200}, "memory.limit_mib"},
		{map[string]any{"limit_mib": -2}, "memory.limit_mib: -2"},
		{map[string]any{"cache_mib": -1}, "memory.cache_mib"},
		{map[string]any{"readers": 1000}, "memory.readers"},
		{map[string]any{"mmap_mib": -5}, "memory.mmap_mib"},
		{map[string]any{"bulk_cache_mib": -1}, "memory.bulk_cache_mib"},
		{map[string]any{"bulk_cache_mib": 128}, "memory.limit_mib: 256 MiB leaves 0 MiB for the Go heap after cache_mib, bulk_cache_mib"},
	} {
		write(c.mem)
		rc, err := node.ReadFile(cfg)
		if err == nil {
			err = rc.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("memory %v: %v, want an error containing %q", c.mem, err, c.want)
		}
	}

	write(map[string]any{"cache_mib": 32, "readers": 2, "limit_mib": -1})
	rc, err := node.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Memory != (node.MemoryConfig{LimitMiB: -1, CacheMiB: 32, Readers: 2}) {
		t.Fatalf("read memory section = %+v", rc.Memory)
	}
	n, err := node.Open(ctx, rc, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if storetest.Engine() == storetest.Postgres {
		return // the section sizes SQLite's caches; PostgreSQL has its own
	}
	var cache int
	if err := n.DB.Write.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil || cache != -16<<10 {
		t.Errorf("writer cache_size = %d, %v; want %d (half of 32 MiB)", cache, err, -16<<10)
	}
	if err := n.DB.Read.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil || cache != -8<<10 {
		t.Errorf("reader cache_size = %d, %v; want %d (16 MiB over 2 readers)", cache, err, -8<<10)
	}
	if got := n.DB.Read.Stats().MaxOpenConnections; got != 2 {
		t.Errorf("readers = %d, want 2", got)
	}
}

// TestNodeBulkCache: memory.bulk_cache_mib reaches the node's vault: while
// an import through the node commits, SQLite's writer holds the bulk
// cache; after it, the writer's half of cache_mib again.
func TestNodeBulkCache(t *testing.T) {
	if storetest.Engine() == storetest.Postgres {
		t.Skip("SQLite's page cache")
	}
	ctx := context.Background()
	cfg, op := initialisedOp(t)
	cfg.Memory = node.MemoryConfig{CacheMiB: 32, BulkCacheMiB: 48, LimitMiB: -1}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	v := n.Vault
	_, admin, tn, ls := tenantWithList(t, v, op, "news")
	writer := func() int {
		var kib int
		if err := n.DB.Write.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&kib); err != nil {
			t.Fatal(err)
		}
		return kib
	}
	var sb strings.Builder
	sb.WriteString("email\n")
	for i := range 200 {
		fmt.Fprintf(&sb, "m%d@example.org\n", i)
	}
	rows, err := ingest.NewCSV(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	var during []int
	res, err := v.Import(admin, tn.ID, ls.ID, rows, vault.ImportOptions{BatchSize: 100, Progress: func(*custos.ImportResult) { during = append(during, writer()) }})
	if err != nil || res.Imported != 200 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	if len(during) == 0 || slices.ContainsFunc(during, func(kib int) bool { return kib != -48<<10 }) {
		t.Fatalf("writer cache_size after the import's commits = %v, want %d", during, -48<<10)
	}
	if got := writer(); got != -16<<10 {
		t.Fatalf("writer cache_size after the import = %d, want %d (half of cache_mib)", got, -16<<10)
	}
}
