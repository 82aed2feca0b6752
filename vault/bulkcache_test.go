package vault_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/vault"
)

// writerCache reads the SQLite writer connection's cache_size (negative:
// KiB). The writer pool has one connection, shared with the sequencer:
// this reads it between commits.
func writerCache(t testing.TB, f *fixture) int {
	t.Helper()
	var n int
	if err := f.db.Write.QueryRow(`PRAGMA cache_size`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBulkCache: with memory.bulk_cache_mib above the writer's share,
// SQLite's writer holds the bulk page cache while an import or a rewrap
// commits, and the ordinary one again once the job is over (its pages
// given back). Fails if a bulk commit does not raise it, or if the end of
// the job does not set it back.
func TestBulkCache(t *testing.T) {
	if storetest.Engine() != storetest.SQLite {
		t.Skip("SQLite's page cache: PostgreSQL ignores memory.bulk_cache_mib")
	}
	normal, _, _ := sqlite.Options{}.Caches() // the writer's, as the fixture's store opens it
	bulk := 2 * normal
	f := newFixtureWith(t, vault.Options{WriterCacheKiB: normal, BulkCacheKiB: bulk})
	ctx, tenant, list := f.admin(t)
	if got := writerCache(t, f); got != -normal {
		t.Fatalf("writer cache %d before any bulk job, want %d", got, -normal)
	}

	// An import of three batches: after each commit (Progress), the
	// writer holds the bulk cache.
	var sb strings.Builder
	sb.WriteString("email,first_name\n")
	for i := range 300 {
		fmt.Fprintf(&sb, "bulk%d@example.test,N%d\n", i, i)
	}
	r, err := newCSV(sb.String())
	if err != nil {
		t.Fatal(err)
	}
	var during []int
	res, err := f.vault.Import(ctx, tenant, list, r, vault.ImportOptions{BatchSize: 100, Progress: func(*custos.ImportResult) {
		during = append(during, writerCache(t, f))
	}})
	if err != nil || res.Imported != 300 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	if len(during) != 3 {
		t.Fatalf("%d progress calls, want 3", len(during))
	}
	for i, n := range during {
		if n != -bulk {
			t.Fatalf("writer cache %d after the import's commit %d, want the bulk cache %d", n, i+1, -bulk)
		}
	}
	if got := writerCache(t, f); got != -normal {
		t.Fatalf("writer cache %d after the import, want %d again", got, -normal)
	}

	// A rewrap: inside each of its commits the writer holds the bulk
	// cache.
	if _, err := f.vault.RotateDataKeys(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.StartRewrap(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	var inTx []int
	vault.OnBulkTx(t, func(ctx context.Context, tx *sql.Tx) {
		var n int
		if err := tx.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&n); err != nil {
			t.Error(err)
		}
		inTx = append(inTx, n)
	})
	rw, err := f.vault.Rewrap(ctx, tenant, 0)
	if err != nil || !rw.Finished || rw.Rewrapped < 300 {
		t.Fatalf("rewrap: %+v, %v", rw, err)
	}
	if len(inTx) == 0 {
		t.Fatal("the rewrap's commits never set the bulk cache")
	}
	for _, n := range inTx {
		if n != -bulk {
			t.Fatalf("writer cache %d inside a rewrap commit, want %d", n, -bulk)
		}
	}
	if got := writerCache(t, f); got != -normal {
		t.Fatalf("writer cache %d after the rewrap, want %d again", got, -normal)
	}
}
