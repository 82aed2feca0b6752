// Package store opens custos's database on either engine and hands out one
// value, [DB], that owns its connection pools: SQLite (a file, one writer
// connection and a pool of readers) or PostgreSQL (one pool shared by
// several nodes, the audit log in queued mode).
//
// The engines themselves, their connection settings and migrations, stay in
// packages sqlite and postgres; store only chooses between them from a DSN
// and gives the rest of the program (the node builder, tests, tools) the
// same fields whichever engine is behind them. The packages that read and
// write the tables (audit, vault, detect, notify) take the *sql.DB pools,
// read before write, and never import store.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/postgres"
	"github.com/custos-dev/custos/sqlite"
)

// Engines, as in [DB.Engine].
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// DB is an open custos database.
type DB struct {
	Engine string // SQLite or Postgres
	// Read and Write are the pools: on SQLite Write has a single
	// connection (one writer; the audit log's sequencer shares it) and
	// Read several; on PostgreSQL they are the same pool.
	Read, Write *sql.DB
	// Placeholders is the engine's style for bulk inserts.
	Placeholders sqlq.Style
	// Queued is set on PostgreSQL: the audit log runs in queued mode
	// there, so that several nodes can share the database
	// (audit.Config.Queued).
	Queued bool
	// WriterCacheKiB and BulkCacheKiB are SQLite's writer page cache,
	// ordinarily and while a bulk job commits (sqlite.DB); 0 on
	// PostgreSQL.
	WriterCacheKiB, BulkCacheKiB int
	Path                         string // SQLite: the database file
	URL                          string // PostgreSQL: the connection URL

	close func() error
}

// Options are the optional settings of [Open].
type Options struct {
	// MustExist refuses to create an SQLite file that is not there (for
	// commands that only read an existing data directory).
	MustExist bool
	// CheckpointEvery is SQLite's idle WAL checkpoint interval
	// (sqlite.Options.CheckpointEvery).
	CheckpointEvery time.Duration
	// NoMigrate opens the database only if its schema is current: pending
	// migrations are refused (migrate.ErrPending) instead of applied.
	NoMigrate bool
	// Memory is SQLite's page-cache budget, readers and mmap
	// (sqlite.Options: CacheKiB, Readers, MmapKiB, BulkCacheKiB);
	// PostgreSQL ignores it.
	Memory sqlite.Options
}

// IsPostgres reports whether dsn names a PostgreSQL database rather than
// an SQLite file.
func IsPostgres(dsn string) bool { return postgres.IsURL(dsn) }

// Open opens and migrates the database dsn names: PostgreSQL for a
// postgres:// or postgresql:// URL, otherwise the SQLite file at that path
// (created 0600 unless opts.MustExist).
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("open store: no database named")
	}
	if IsPostgres(dsn) {
		db, err := postgres.OpenOptions(ctx, dsn, postgres.Options{NoMigrate: opts.NoMigrate})
		if err != nil {
			return nil, err
		}
		return FromPostgres(db), nil
	}
	if opts.MustExist {
		if _, err := os.Stat(dsn); err != nil {
			return nil, fmt.Errorf("no database at %s: %w", dsn, err)
		}
	}
	db, err := sqlite.OpenOptions(ctx, dsn, sqlite.Options{CheckpointEvery: opts.CheckpointEvery, NoMigrate: opts.NoMigrate,
		CacheKiB: opts.Memory.CacheKiB, Readers: opts.Memory.Readers, MmapKiB: opts.Memory.MmapKiB, BulkCacheKiB: opts.Memory.BulkCacheKiB})
	if err != nil {
		return nil, err
	}
	return FromSQLite(db), nil
}

// FromSQLite wraps an SQLite database opened by package sqlite; closing
// the result closes db.
func FromSQLite(db *sqlite.DB) *DB {
	return &DB{Engine: SQLite, Read: db.Read, Write: db.Write, Placeholders: db.Placeholders, Path: db.Path, close: db.Close,
		WriterCacheKiB: db.WriterCacheKiB, BulkCacheKiB: db.BulkCacheKiB}
}

// FromPostgres wraps a PostgreSQL database opened by package postgres;
// closing the result closes db.
func FromPostgres(db *postgres.DB) *DB {
	return &DB{Engine: Postgres, Read: db.Read, Write: db.Write, Placeholders: db.Placeholders, Queued: true, URL: db.URL, close: db.Close}
}

// DSN returns what [Open] was given: the file path or the URL.
func (db *DB) DSN() string {
	if db.Engine == Postgres {
		return db.URL
	}
	return db.Path
}

// Close closes the pools (and SQLite's checkpointer). A second Close is a
// no-op.
func (db *DB) Close() error { return db.close() }
