// Package migrate applies a store's numbered, embedded SQL migrations
// ("0001_init.sql", …) in order, one transaction each, recording each in
// schema_migrations. SQLite and PostgreSQL share it; only their DDL differs.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Run applies the migrations in dir of fsys that db has not applied yet.
// lock, if not empty, is run first in each migration's transaction: on
// PostgreSQL it takes a transaction-scoped advisory lock so that nodes
// starting together do not apply the same migration twice.
func Run(ctx context.Context, db *sql.DB, fsys fs.FS, dir, lock string) error {
	if err := createTable(ctx, db, lock); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := path.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad version prefix", base)
		}
		if err := apply(ctx, db, fsys, v, name, lock); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
	}
	return nil
}

// createTable creates schema_migrations under lock: on PostgreSQL two
// concurrent CREATE TABLE IF NOT EXISTS can collide.
func createTable(ctx context.Context, db *sql.DB, lock string) error {
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
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return err
	}
	return tx.Commit()
}

func apply(ctx context.Context, db *sql.DB, fsys fs.FS, version int, name, lock string) error {
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}
