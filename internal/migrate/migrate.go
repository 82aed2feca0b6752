// Package migrate applies a store's numbered, embedded SQL migrations
// ("0001_init.sql", …) in order, one transaction each, recording each in
// schema_migrations. SQLite and PostgreSQL share it; only their DDL differs.
package migrate

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Source is a directory of numbered migrations in a file system.
type Source struct {
	FS  fs.FS
	Dir string
}

//go:embed portable/*.sql
var portable embed.FS

// Portable holds the migrations whose DDL runs unchanged on SQLite and
// PostgreSQL (BIGINT and TEXT only). An engine adds its own source for
// the rest; versions are one sequence across both.
var Portable = Source{portable, "portable"}

// Run applies, in version order, the migrations of sources that db has
// not applied yet. lock, if not empty, is run first in each migration's
// transaction: on PostgreSQL it takes a transaction-scoped advisory lock
// so that nodes starting together do not apply the same migration twice.
func Run(ctx context.Context, db *sql.DB, lock string, sources ...Source) error {
	ms, err := list(sources)
	if err != nil {
		return err
	}
	if err := createTable(ctx, db, lock); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		err := locked(ctx, db, lock, func(tx *sql.Tx) error { return apply(ctx, tx, m.fs, m.version, m.name) })
		if err != nil {
			return fmt.Errorf("migration %s: %w", path.Base(m.name), err)
		}
	}
	return nil
}

// Versions returns how many migrations the sources hold.
func Versions(sources ...Source) (int, error) {
	ms, err := list(sources)
	return len(ms), err
}

type migration struct {
	fs      fs.FS
	name    string
	version int
}

// list returns the sources' migrations in version order, refusing a
// version that two files claim.
func list(sources []Source) ([]migration, error) {
	var ms []migration
	seen := map[int]string{}
	for _, src := range sources {
		names, err := fs.Glob(src.FS, src.Dir+"/*.sql")
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			base := path.Base(name)
			v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
			if err != nil {
				return nil, fmt.Errorf("migration %s: bad version prefix", base)
			}
			if prev, ok := seen[v]; ok {
				return nil, fmt.Errorf("migrations %s and %s share version %d", prev, base, v)
			}
			seen[v] = base
			ms = append(ms, migration{src.FS, name, v})
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// createTable creates schema_migrations under lock: on PostgreSQL two
// concurrent CREATE TABLE IF NOT EXISTS can collide.
func createTable(ctx context.Context, db *sql.DB, lock string) error {
	return locked(ctx, db, lock, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`)
		return err
	})
}

// locked runs fn in a transaction that first runs lock (if not empty) and
// commits if fn succeeds.
func locked(ctx context.Context, db *sql.DB, lock string, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if lock != "" {
		if _, err := tx.ExecContext(ctx, lock); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// apply applies one migration in tx unless it is recorded as applied.
func apply(ctx context.Context, tx *sql.Tx, fsys fs.FS, version int, name string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	body, err := fs.ReadFile(fsys, name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, time.Now().UnixMilli())
	return err
}
