// Package migrate applies a store's numbered, embedded SQL migrations
// ("0001_init.sql", …) in order, one transaction each, recording each in
// schema_migrations. SQLite and PostgreSQL share it; only their DDL differs.
//
// Migrations are forward-only: there are no down migrations, and a
// database whose schema_migrations records a version the binary does not
// know (a newer release ran on it) is refused with [ErrNewerSchema] rather
// than served by code that does not know its tables.
package migrate

import (
	"context"
	"database/sql"
	"embed"
	"errors"
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
	return RunTo(ctx, db, lock, 0, sources...)
}

// ErrNewerSchema is returned for a database a newer custos migrated.
var ErrNewerSchema = errors.New("the database schema is newer than this custos knows")

// ErrPending is returned by [Check] for a database with migrations left
// to apply.
var ErrPending = errors.New("the database schema needs migrating")

// RunTo is [Run] applying only the versions up to upTo (0: all): the
// schema as an older release left it, for upgrade tests.
func RunTo(ctx context.Context, db *sql.DB, lock string, upTo int, sources ...Source) error {
	ms, err := list(sources)
	if err != nil {
		return err
	}
	if err := createTable(ctx, db, lock); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	if err := checkNewer(ctx, db, ms); err != nil {
		return err
	}
	for _, m := range ms {
		if upTo > 0 && m.version > upTo {
			break
		}
		err := locked(ctx, db, lock, func(tx *sql.Tx) error { return apply(ctx, tx, m.fs, m.version, m.name) })
		if err != nil {
			return fmt.Errorf("migration %s: %w", path.Base(m.name), err)
		}
	}
	return nil
}

// Status is a database's schema: the versions applied and those the
// sources hold that are not.
type Status struct {
	Applied []int
	Pending []int
	Known   int // the newest version the sources hold
}

// Check returns db's [Status] without changing anything, and
// [ErrNewerSchema] if db records a version the sources do not hold, or
// [ErrPending] (with the status) if migrations are left to apply.
func Check(ctx context.Context, db *sql.DB, sources ...Source) (*Status, error) {
	ms, err := list(sources)
	if err != nil {
		return nil, err
	}
	st := &Status{}
	if len(ms) > 0 {
		st.Known = ms[len(ms)-1].version
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return nil, err
	}
	st.Applied = applied
	done := map[int]bool{}
	for _, v := range applied {
		done[v] = true
	}
	for _, m := range ms {
		if !done[m.version] {
			st.Pending = append(st.Pending, m.version)
		}
	}
	if err := newer(applied, ms); err != nil {
		return st, err
	}
	if len(st.Pending) > 0 {
		return st, fmt.Errorf("%w: versions %v are not applied yet (run custos migrate, or serve --migrate)", ErrPending, st.Pending)
	}
	return st, nil
}

// appliedVersions reads schema_migrations (none if it does not exist).
func appliedVersions(ctx context.Context, db *sql.DB) ([]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		// No table: a database nothing was applied to.
		var n int
		if db.QueryRowContext(ctx, `SELECT 1`).Scan(&n) == nil {
			return nil, nil
		}
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// checkNewer refuses a database that records a version ms do not hold.
func checkNewer(ctx context.Context, db *sql.DB, ms []migration) error {
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return err
	}
	return newer(applied, ms)
}

func newer(applied []int, ms []migration) error {
	known := map[int]bool{}
	top := 0
	for _, m := range ms {
		known[m.version] = true
		top = max(top, m.version)
	}
	var unknown []int
	for _, v := range applied {
		if !known[v] {
			unknown = append(unknown, v)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: it records migrations %v, and this custos knows versions up to %d; run the release that migrated it (migrations are forward-only)", ErrNewerSchema, unknown, top)
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
