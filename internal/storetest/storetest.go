// Package storetest opens a fresh custos database for a test, on the engine
// the run is for, so that one suite runs unchanged against SQLite and
// PostgreSQL.
//
// A package opts in with
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// Its tests then run on SQLite; and when CUSTOS_TEST_POSTGRES holds a
// PostgreSQL URL, Main runs the same test binary again with the engine set
// to PostgreSQL, each test in a schema of its own that is dropped after it.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // NewSchema's admin connection

	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/store"
)

// Environment variables.
const (
	EnvPostgres = "CUSTOS_TEST_POSTGRES" // a PostgreSQL URL; unset: PostgreSQL runs skip
	EnvEngine   = "CUSTOS_TEST_ENGINE"   // "sqlite" (default) or "postgres", set by Main
)

// Engines.
const (
	SQLite   = store.SQLite
	Postgres = store.Postgres
)

// Engine returns the engine this run is for.
func Engine() string {
	if os.Getenv(EnvEngine) == Postgres {
		return Postgres
	}
	return SQLite
}

// Open opens a fresh, migrated database for t on the run's engine; it is
// closed (and on PostgreSQL dropped) when t ends. On PostgreSQL it is a
// clone of a template migrated once (template.go).
func Open(t testing.TB) *store.DB {
	t.Helper()
	dsn := ""
	if Engine() == Postgres {
		dsn = cloneMigrated(t, PostgresURL(t))
	} else {
		dsn = DSN(t)
	}
	db, err := store.Open(context.Background(), dsn, store.Options{Memory: MemoryFromEnv(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// MemoryFromEnv reads SQLite's memory settings for a benchmark from
// CUSTOS_TEST_SQLITE_CACHE_MIB, CUSTOS_TEST_SQLITE_MMAP_MIB and
// CUSTOS_TEST_SQLITE_BULK_MIB (the custos.json memory section's
// cache_mib, mmap_mib and bulk_cache_mib); unset, the engine's defaults.
func MemoryFromEnv(t testing.TB) sqlite.Options {
	var o sqlite.Options
	for env, set := range map[string]func(int){
		"CUSTOS_TEST_SQLITE_CACHE_MIB": func(n int) { o.CacheKiB = n << 10 },
		"CUSTOS_TEST_SQLITE_MMAP_MIB":  func(n int) { o.MmapKiB = n << 10 },
		"CUSTOS_TEST_SQLITE_BULK_MIB":  func(n int) { o.BulkCacheKiB = n << 10 },
	} {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a number of MiB", env, v)
			}
			set(n)
		}
	}
	return o
}

// DSN returns a fresh, empty database for t on the run's engine, for
// [store.Open] (or a node's configuration) to open: an SQLite file in a
// temporary directory, or a PostgreSQL URL whose connections use a schema
// of their own, dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	if Engine() == Postgres {
		return NewSchema(t, PostgresURL(t))
	}
	return filepath.Join(t.TempDir(), "custos.db")
}

// PostgresURL returns CUSTOS_TEST_POSTGRES, or skips t saying how to set it.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvPostgres)
	if u == "" {
		t.Skipf("PostgreSQL test skipped: set %s=postgres://user@127.0.0.1:5432/db?sslmode=disable to run it (.ci/run does)", EnvPostgres)
	}
	return u
}

// NewSchema creates an empty schema in the database at base and returns a
// URL whose connections use it; the schema is dropped when t ends.
func NewSchema(t testing.TB, base string) string {
	t.Helper()
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// LogTable is the table an audited change commits its entry to: the
// queue in queued mode, the leaves otherwise.
func LogTable(db *store.DB) string {
	if db.Queued {
		return "audit_queue"
	}
	return "audit_leaves"
}

// FailInserts makes every INSERT into table fail until the returned
// function is called: a stand-in for a full disk or a broken database.
func FailInserts(t testing.TB, db *store.DB, table string) (undo func()) {
	t.Helper()
	var stmts, undos []string
	if db.Engine == Postgres {
		stmts = []string{
			`CREATE OR REPLACE FUNCTION custos_test_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER custos_test_fail BEFORE INSERT ON ` + table + ` FOR EACH ROW EXECUTE FUNCTION custos_test_fail()`,
		}
		undos = []string{`DROP TRIGGER custos_test_fail ON ` + table}
	} else {
		stmts = []string{`CREATE TRIGGER custos_test_fail BEFORE INSERT ON ` + table + ` BEGIN SELECT RAISE(ABORT, 'disk full'); END`}
		undos = []string{`DROP TRIGGER custos_test_fail`}
	}
	for _, s := range stmts {
		if _, err := db.Write.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		for _, s := range undos {
			if _, err := db.Write.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Dump returns every value of every table as raw bytes (blobs as stored,
// not hex), for tests that look for plaintext an insider could read. On
// SQLite it is the database file with its WAL.
func Dump(t testing.TB, db *store.DB) string {
	t.Helper()
	var out strings.Builder
	if db.Engine == SQLite {
		for _, p := range []string{db.Path, db.Path + "-wal"} {
			b, err := os.ReadFile(p)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			out.Write(b)
		}
		return out.String()
	}
	for _, n := range Column[string](t, db.Read, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`) {
		rows, err := db.Read.Query(`SELECT * FROM ` + n)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					out.Write(b)
				} else {
					fmt.Fprint(&out, v)
				}
				out.WriteByte('\n')
			}
		}
		rows.Close()
	}
	return out.String()
}

// Column runs query on db and returns its one column, a value of type T a
// row, in the order of the rows. Any error fails t.
func Column[T any](t testing.TB, db *sql.DB, query string, args ...any) []T {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Main runs the package's tests on SQLite, then, if CUSTOS_TEST_POSTGRES is
// set, runs the same binary again on PostgreSQL.
func Main(m *testing.M) {
	code := m.Run()
	drops.Wait() // the PostgreSQL clones' background drops
	if os.Getenv(EnvEngine) != "" || fuzzingOrBenchmarking() {
		os.Exit(code)
	}
	if os.Getenv(EnvPostgres) == "" {
		fmt.Printf("storetest: PostgreSQL conformance run skipped: set %s to a PostgreSQL URL to run these tests on PostgreSQL too\n", EnvPostgres)
		os.Exit(code)
	}
	fmt.Println("storetest: running the same tests on PostgreSQL")
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), EnvEngine+"="+Postgres)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Printf("storetest: PostgreSQL run failed: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// fuzzingOrBenchmarking reports whether this binary was asked to fuzz (as
// the coordinator or a worker) or to run benchmarks: those are not
// repeated on PostgreSQL (set CUSTOS_TEST_ENGINE=postgres to run them there).
func fuzzingOrBenchmarking() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") || strings.HasPrefix(a, "-test.bench") {
			return true
		}
	}
	return false
}
