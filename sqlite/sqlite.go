// Package sqlite opens custos's embedded store: one SQLite file in WAL mode
// with synchronous=FULL, so every commit is fsynced before it returns.
//
// It owns the connection settings and the numbered migrations embedded in
// the binary. The SQL that reads and writes the tables lives with the code
// that owns the tables (vault, audit) and is written to run unchanged on
// SQLite and PostgreSQL ($N placeholders, integer times, BLOB/BYTEA scanned
// as []byte), so the two engines differ only here, in their DDL and their
// connection setup.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/custos-dev/custos/internal/migrate"
	"github.com/custos-dev/custos/internal/sqlq"
)

// MigrationSources are the shared portable migrations and SQLite's own.
func MigrationSources() []migrate.Source {
	return []migrate.Source{migrate.Portable, {FS: Migrations, Dir: "migrations"}}
}

// Migrations holds SQLite's own numbered schema migrations (the portable
// ones are migrate.Portable).
//
//go:embed migrations/*.sql
var Migrations embed.FS

// DB is an open custos database: a single writer connection (SQLite allows
// one writer; serialising in the pool avoids SQLITE_BUSY) and a pool of
// readers that WAL lets run beside it.
type DB struct {
	// Placeholders is SQLite's cheap style for bulk inserts: anonymous
	// "?" (numbered placeholders are resolved by a linear scan).
	Placeholders sqlq.Style

	Path  string
	Write *sql.DB
	Read  *sql.DB
}

// Open opens (creating if needed) the database file at path and applies
// any pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := ensureDir(path); err != nil {
		return nil, err
	}
	// The single writer gets a large page cache: imports insert into
	// indexes keyed by random tokens and blind indexes, and each insert
	// that misses the cache is a read syscall.
	w, err := open(path, 1, "cache_size(-262144)") // 256 MiB
	if err != nil {
		return nil, err
	}
	r, err := open(path, 8, "cache_size(-65536)") // 64 MiB each
	if err != nil {
		w.Close()
		return nil, err
	}
	db := &DB{Path: path, Write: w, Read: r, Placeholders: sqlq.Question}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func open(path string, conns int, cache string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"busy_timeout(10000)",
		"foreign_keys(ON)",
		"wal_autocheckpoint(16384)", // 64 MiB of WAL between checkpoints: a page rewritten by many batches is copied back once
		cache,
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	err1 := db.Write.Close()
	err2 := db.Read.Close()
	if err1 != nil {
		return err1
	}
	return err2
}

func (db *DB) migrate(ctx context.Context) error {
	return migrate.Run(ctx, db.Write, "", MigrationSources()...)
}
