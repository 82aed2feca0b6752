package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/custos-dev/custos/sqlite"
)

// TestMemoryBudget: the handle's page caches come out of one budget (half
// the writer's, half shared by the readers, at least 2 MiB a connection),
// every reader connection — not only the first — has its share, and
// mmap_size is what was asked (none by default).
func TestMemoryBudget(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name                 string
		opts                 sqlite.Options
		writer, reader, mmap int64 // cache_size in KiB (negated by SQLite), mmap_size in bytes
		readers              int
	}{
		{"default", sqlite.Options{}, 32 << 10, 4 << 10, 0, 8},
		{"budget", sqlite.Options{CacheKiB: 128 << 10, Readers: 4, MmapKiB: 1 << 10}, 64 << 10, 16 << 10, 1 << 20, 4},
		{"floor", sqlite.Options{CacheKiB: 1 << 10, Readers: 2}, 2 << 10, 2 << 10, 0, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.opts.CheckpointEvery = -1
			db, err := sqlite.OpenOptions(ctx, filepath.Join(t.TempDir(), "custos.db"), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			check := func(conn *sql.Conn, who string, cache int64) {
				t.Helper()
				var got, mmap int64
				if err := conn.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&got); err != nil || got != -cache {
					t.Errorf("%s cache_size = %d, %v; want %d", who, got, err, -cache)
				}
				if err := conn.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&mmap); err != nil || mmap != c.mmap {
					t.Errorf("%s mmap_size = %d, %v; want %d", who, mmap, err, c.mmap)
				}
			}
			w, err := db.Write.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			check(w, "writer", c.writer)
			w.Close()
			if got := db.Read.Stats().MaxOpenConnections; got != c.readers {
				t.Errorf("readers = %d, want %d", got, c.readers)
			}
			// Hold every reader at once, so each is a distinct connection.
			var conns []*sql.Conn
			for range c.readers {
				r, err := db.Read.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, r)
			}
			for _, r := range conns {
				check(r, "reader", c.reader)
				r.Close()
			}
		})
	}
}
