package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-dev/custos/postgres"
)

// Migrating a fresh PostgreSQL schema costs a second or more of DDL, and
// most tests want nothing but a migrated, empty database. So [Open] on
// PostgreSQL clones one instead: the first test of a run migrates a
// template database once (named by the base database and a digest of the
// migrations, so a changed migration builds a new one and concurrent test
// binaries share it), and every test gets CREATE DATABASE … TEMPLATE of it.
// The clones are dropped in the background (a drop forces a checkpoint)
// and waited for when the binary ends ([Main]).

var (
	templateOnce sync.Once
	templateName string
	templateErr  error

	drops   sync.WaitGroup
	dropSem = make(chan struct{}, 1) // one drop at a time: each checkpoints
)

// migrationsDigest names the schema this binary's migrations build.
func migrationsDigest() (string, error) {
	h := sha256.New()
	for _, src := range postgres.MigrationSources() {
		err := fs.WalkDir(src.FS, src.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(src.FS, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %d\n", p, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// withDatabase returns base with its database replaced by name.
func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// databaseOf returns the database base names.
func databaseOf(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	db := strings.TrimPrefix(path.Clean(u.Path), "/")
	if db == "" || db == "." {
		return "", fmt.Errorf("%s names no database", EnvPostgres)
	}
	return db, nil
}

// template returns the migrated template database's name, building it on
// the first call of the process if no earlier run left it.
func template(base string) (string, error) {
	templateOnce.Do(func() { templateName, templateErr = buildTemplate(base) })
	return templateName, templateErr
}

func buildTemplate(base string) (string, error) {
	ctx := context.Background()
	digest, err := migrationsDigest()
	if err != nil {
		return "", err
	}
	dbname, err := databaseOf(base)
	if err != nil {
		return "", err
	}
	name := sanitize(dbname) + "_tmpl_" + digest
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx) // the advisory lock is the session's
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sum := sha256.Sum256([]byte(name))
	key := int64(binary.BigEndian.Uint64(sum[:8]))
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return "", err
	}
	defer conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, key)
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		return "", err
	}
	if n == 1 {
		return name, nil
	}
	// Migrate under a scratch name and rename when done, so a template is
	// never seen half built (a crashed build leaves only the scratch).
	scratch := name + "_build"
	conn.ExecContext(ctx, `DROP DATABASE IF EXISTS `+scratch+` WITH (FORCE)`)
	if _, err := conn.ExecContext(ctx, `CREATE DATABASE `+scratch); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	u, err := withDatabase(base, scratch)
	if err != nil {
		return "", err
	}
	db, err := postgres.Open(ctx, u)
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	db.Close()
	if _, err := conn.ExecContext(ctx, `ALTER DATABASE `+scratch+` RENAME TO `+name); err != nil {
		return "", fmt.Errorf("rename template: %w", err)
	}
	return name, nil
}

// sanitize keeps name a plain identifier (the base database may have any).
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) > 30 {
		s = s[:30]
	}
	if s == "" {
		s = "custos"
	}
	return s
}

// cloneMigrated returns the URL of a new database cloned from the
// migrated template, dropped (in the background) when t ends.
func cloneMigrated(t testing.TB, base string) string {
	t.Helper()
	tmpl, err := template(base)
	if err != nil {
		t.Fatalf("storetest: migrated template: %v", err)
	}
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	dbname, err := databaseOf(base)
	if err != nil {
		t.Fatal(err)
	}
	// Named after the base database, so a run's leftovers (a killed
	// binary's) are found by prefix: .ci/run drops them with its database.
	name := sanitize(dbname) + "_t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for attempt := 0; ; attempt++ {
		_, err = admin.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE `+tmpl)
		var pgErr *pgconn.PgError
		// 55006: the template is being accessed (another clone's or the
		// builder's connection still closing): wait a little and retry.
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("storetest: clone the migrated template: %v", err)
	}
	t.Cleanup(func() { dropLater(base, name) })
	u, err := withDatabase(base, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// dropLater drops the database name in the background; [Main] waits for
// every drop before the binary exits.
func dropLater(base, name string) {
	drops.Add(1)
	go func() {
		defer drops.Done()
		dropSem <- struct{}{}
		defer func() { <-dropSem }()
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.ExecContext(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	}()
}
