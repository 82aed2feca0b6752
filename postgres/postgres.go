// Package postgres opens custos's shared store: one PostgreSQL database
// that several stateless custos nodes use at once.
//
// It owns the connection settings and the numbered migrations embedded in
// the binary (the twins of package sqlite's). The SQL that reads and writes
// the tables lives with the code that owns them (vault, audit) and runs
// unchanged on both engines. What differs beyond DDL is the audit log's
// mode: on PostgreSQL any node queues entries with their changes, and one
// elected node sequences them (see audit.Config.Queued).
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/custos-dev/custos/internal/migrate"
	"github.com/custos-dev/custos/internal/sqlq"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MigrationLock is the advisory lock key that serialises migrations.
const MigrationLock = 0x637573746f73 // "custos"

// DB is an open custos database on PostgreSQL. Write and Read are the same
// pool: PostgreSQL has no single-writer limit.
type DB struct {
	Placeholders sqlq.Style // $n

	URL   string
	Write *sql.DB
	Read  *sql.DB
}

// IsURL reports whether s names a PostgreSQL database.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// MigrationSources are the migrations of a PostgreSQL database.
func MigrationSources() []migrate.Source {
	return []migrate.Source{migrate.Portable, {FS: migrations, Dir: "migrations"}}
}

// Options are the optional settings of [OpenOptions].
type Options struct {
	// NoMigrate applies no migration: a database with some pending is
	// refused (migrate.ErrPending), as one a newer custos migrated always
	// is (migrate.ErrNewerSchema).
	NoMigrate bool
}

// Open connects to the database at url and applies any pending migrations.
func Open(ctx context.Context, url string) (*DB, error) { return OpenOptions(ctx, url, Options{}) }

// OpenOptions is [Open] with options.
func OpenOptions(ctx context.Context, url string, opts Options) (*DB, error) {
	pool, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	pool.SetMaxOpenConns(32)
	pool.SetMaxIdleConns(32)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := &DB{URL: url, Write: pool, Read: pool, Placeholders: sqlq.Dollar}
	lock := fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", MigrationLock)

	if opts.NoMigrate {
		_, err = migrate.Check(ctx, pool, MigrationSources()...)
	} else {
		err = migrate.Run(ctx, pool, lock, MigrationSources()...)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the pool.
func (db *DB) Close() error { return db.Write.Close() }
