package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/store"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// Open picks the engine from the DSN and fills the same fields either way.
func TestOpenPicksEngine(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t)
	db, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := struct {
		engine string
		queued bool
		style  sqlq.Style
	}{store.SQLite, false, sqlq.Question}
	if storetest.Engine() == storetest.Postgres {
		want.engine, want.queued, want.style = store.Postgres, true, sqlq.Dollar
	}
	if db.Engine != want.engine || db.Queued != want.queued || db.Placeholders != want.style || db.DSN() != dsn {
		t.Errorf("Open(%s) = engine %q queued %v placeholders %v dsn %q; want %+v", storetest.Engine(), db.Engine, db.Queued, db.Placeholders, db.DSN(), want)
	}
	// Migrated, through either pool.
	for name, pool := range map[string]*sql.DB{"read": db.Read, "write": db.Write} {
		var n int
		if err := pool.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n == 0 {
			t.Errorf("%s pool: %d migrations recorded (%v), want some", name, n, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenMustExist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custos.db")
	if _, err := store.Open(context.Background(), path, store.Options{MustExist: true}); err == nil || !strings.Contains(err.Error(), "no database at") {
		t.Errorf("Open of a missing file with MustExist: %v", err)
	}
	if _, err := store.Open(context.Background(), "", store.Options{}); err == nil {
		t.Error("Open of an empty DSN succeeded")
	}
}
