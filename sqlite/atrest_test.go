package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/sqlite"
)

// TestDataFilesPrivate (issue 13, finding 8): the data directory is
// created 0700 and the database, its WAL and its shared-memory file 0600,
// whatever the umask allows; files or a directory open to others are
// refused at start with an error that names them and the fix.
func TestDataFilesPrivate(t *testing.T) {
	old := syscall.Umask(0o022) // the common default, under which SQLite makes 0644 files
	defer syscall.Umask(old)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "custos.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Write.Exec(`CREATE TABLE t (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Write.Exec(`INSERT INTO t VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Read.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600}
	for p, mode := range want {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s is mode %04o, want %04o", filepath.Base(p), st.Mode().Perm(), mode)
		}
	}
	if err := sqlite.CheckDir(dir); err != nil {
		t.Errorf("CheckDir of a private directory: %v", err)
	}
	db.Close()

	// Loosened by hand (or by a restore that forgot the modes): refused.
	os.Chmod(path, 0o644)
	if db, err := sqlite.Open(ctx, path); err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
		if db != nil {
			db.Close()
		}
		t.Errorf("open of a 0644 database file: %v; want a refusal naming the fix", err)
	}
	os.Chmod(path, 0o600)
	os.Chmod(dir, 0o755)
	if err := sqlite.CheckDir(dir); err == nil || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Errorf("CheckDir of a 0755 directory: %v; want a refusal naming the fix", err)
	}
}

// TestWALStaysBounded (issue 13, finding 8): after a burst of writes the
// WAL is checkpointed and truncated once the writer is idle, even if a
// reader held an old snapshot for a while (the checkpointer retries); a
// "full disk" (SQLite's page limit) fails writes, and once space is free
// again writes succeed and the WAL is emptied again, with no restart.
func TestWALStaysBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "custos.db")
	db, err := sqlite.OpenOptions(ctx, path, sqlite.Options{CheckpointEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Write.Exec(`CREATE TABLE t (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Write.Exec(`INSERT INTO t VALUES ('a'), ('b')`); err != nil {
		t.Fatal(err)
	}
	// A reader holds a snapshot (an unfinished statement) while the writes
	// happen: no checkpoint can complete past it.
	rows, err := db.Read.QueryContext(ctx, `SELECT v FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	burst := func() error {
		tx, err := db.Write.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i := range 4000 {
			if _, err := tx.Exec(`INSERT INTO t VALUES ($1)`, strings.Repeat("x", 500)+string(rune('a'+i%26))); err != nil {
				return err
			}
		}
		return tx.Commit()
	}
	if err := burst(); err != nil {
		t.Fatal(err)
	}
	if walSize(t, path) < 1<<20 {
		t.Fatalf("WAL is %d bytes after a 2 MB burst; the test needs it to grow", walSize(t, path))
	}
	rows.Close()
	waitWALEmpty(t, path)

	// A full disk: writes fail (the log fails closed above this) …
	var pages int
	db.Write.QueryRow(`PRAGMA page_count`).Scan(&pages)
	if _, err := db.Write.Exec(`PRAGMA max_page_count = ` + strconv.Itoa(pages)); err != nil {
		t.Fatal(err)
	}
	if err := burst(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "full") {
		t.Fatalf("a write on a full disk: %v; want it refused", err)
	}
	// … and once space is free again, the same open database writes and
	// its WAL is emptied again.
	if _, err := db.Write.Exec(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	if err := burst(); err != nil {
		t.Fatalf("a write once space is free: %v", err)
	}
	waitWALEmpty(t, path)
	if err := db.Checkpoint(ctx); err != nil && !errors.Is(err, sqlite.ErrCheckpointBusy) {
		t.Fatalf("checkpoint: %v", err)
	}
}

func walSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path + "-wal")
	if errors.Is(err, os.ErrNotExist) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// waitWALEmpty waits (bounded, not timed) for the checkpointer to empty
// the WAL.
func waitWALEmpty(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); walSize(t, path) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL is still %d bytes: it was never checkpointed and truncated", walSize(t, path))
		}
	}
}
