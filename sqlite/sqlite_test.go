package sqlite_test

import (
	"context"

	"path/filepath"
	"testing"

	"github.com/custos-dev/custos/internal/migrate"
	"github.com/custos-dev/custos/sqlite"
)

func TestOpenMigratesIdempotently(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "custos.db")
	for i := 0; i < 2; i++ {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		var mode string
		if err := db.Read.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
		}
		var sync int
		if err := db.Write.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
			t.Fatalf("synchronous = %d, %v; want 2 (FULL)", sync, err)
		}
		// Each embedded migration is recorded once, however often the
		// database is opened.
		want, err := migrate.Versions(sqlite.MigrationSources()...)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.Read.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != want || n < 5 {
			t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, want)
		}
		db.Close()
	}
}
