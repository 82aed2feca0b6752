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
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

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

	// WriterCacheKiB is the writer's page cache (its share of
	// Options.CacheKiB); BulkCacheKiB is Options.BulkCacheKiB, what the
	// writer may hold while a bulk job commits (0: no more than
	// WriterCacheKiB). The vault switches between them.
	WriterCacheKiB, BulkCacheKiB int

	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Options are the optional settings of [OpenOptions].
type Options struct {
	// CheckpointEvery is how often, when the writer is idle, the WAL is
	// checkpointed and truncated to zero bytes (default 10 s; negative:
	// never, for tools that manage the file themselves).
	CheckpointEvery time.Duration
	// NoMigrate applies no migration: a database with some pending is
	// refused (migrate.ErrPending), as one a newer custos migrated always
	// is (migrate.ErrNewerSchema).
	NoMigrate bool
	// CacheKiB is the page-cache budget of the whole database handle, in
	// KiB: half goes to the single writer (imports insert into indexes
	// keyed by random tokens and blind indexes, and each insert that misses
	// the cache is a read syscall), the other half is shared out among the
	// Readers connections. 0: DefaultCacheKiB.
	CacheKiB int
	// Readers is the number of reader connections (0: DefaultReaders).
	Readers int
	// BulkCacheKiB is the writer's page cache, in KiB, while an import or
	// a rewrap commits (0: the writer's share of CacheKiB throughout). A
	// bulk job inserts or moves a row at a random place of its list's
	// blind index for every row it writes: with the index in the cache
	// those are memory reads, not a pread and a page spilled to the WAL
	// each (docs/operations.md, "Memory").
	BulkCacheKiB int
	// MmapKiB is SQLite's mmap_size for every connection, in KiB (0: no
	// memory-mapped I/O). Mapped pages are the kernel's page cache,
	// shared by all connections instead of copied into each private
	// cache, but every page touched counts in the process's RSS.
	MmapKiB int
}

// DefaultCacheKiB is the default page-cache budget: 64 MiB, half for the
// writer and half for the readers (docs/config.md, memory.cache_mib).
const DefaultCacheKiB = 64 << 10

// DefaultReaders is the default number of reader connections.
const DefaultReaders = 8

// Caches returns the cache_size of the writer and of each reader, in KiB,
// out of the budget: never below 2 MiB a connection (SQLite's own default).
func (o Options) Caches() (writer, reader, readers int) {
	budget, readers := o.CacheKiB, o.Readers
	if budget <= 0 {
		budget = DefaultCacheKiB
	}
	if readers <= 0 {
		readers = DefaultReaders
	}
	return max(budget/2, 2048), max(budget/2/readers, 2048), readers
}

// DefaultCheckpointEvery is the idle WAL checkpoint interval.
const DefaultCheckpointEvery = 10 * time.Second

// Open opens (creating if needed) the database file at path and applies
// any pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	return OpenOptions(ctx, path, Options{})
}

// OpenOptions is [Open] with options. The database file is created 0600
// in a 0700 directory; files open to group or others are refused.
func OpenOptions(ctx context.Context, path string, opts Options) (*DB, error) {
	if err := ensureDir(path); err != nil {
		return nil, err
	}
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	if err := CheckFiles(path); err != nil {
		return nil, err
	}
	// One budget for the handle's page caches (Options.CacheKiB), not a
	// private cache per connection sized on its own: the readers' caches
	// hold mostly the same interior pages, and the kernel's page cache
	// holds the file anyway.
	wc, rc, readers := opts.Caches()
	mmap := fmt.Sprintf("mmap_size(%d)", int64(max(opts.MmapKiB, 0))<<10)
	w, err := open(path, 1, fmt.Sprintf("cache_size(-%d)", wc), mmap)
	if err != nil {
		return nil, err
	}
	r, err := open(path, readers, fmt.Sprintf("cache_size(-%d)", rc), mmap)
	if err != nil {
		w.Close()
		return nil, err
	}
	db := &DB{Path: path, Write: w, Read: r, Placeholders: sqlq.Question, WriterCacheKiB: wc, BulkCacheKiB: max(opts.BulkCacheKiB, 0),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := db.migrate(ctx, opts.NoMigrate); err != nil {
		close(db.stopped)
		db.Close()
		return nil, err
	}
	every := opts.CheckpointEvery
	if every == 0 {
		every = DefaultCheckpointEvery
	}
	if every > 0 {
		go db.checkpointLoop(every)
	} else {
		close(db.stopped)
	}
	return db, nil
}

func open(path string, conns int, cache, mmap string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"busy_timeout(10000)",
		"foreign_keys(ON)",
		"wal_autocheckpoint(16384)",    // 64 MiB of WAL between checkpoints: a page rewritten by many batches is copied back once
		"journal_size_limit(67108864)", // and a WAL reset after a checkpoint is cut back to 64 MiB, not left at its high-water mark
		"secure_delete(ON)",            // deleted rows are overwritten, not left in free pages (verified deletion: docs/deletion.md)
		cache,
		mmap,
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

// Close stops the checkpointer and closes both pools.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.stop)
		<-db.stopped
		db.closeErr = errors.Join(db.Write.Close(), db.Read.Close())
	})
	return db.closeErr
}

// ErrCheckpointBusy reports a checkpoint that could not finish because a
// reader still uses an older snapshot; the next one will.
var ErrCheckpointBusy = errors.New("wal checkpoint: readers hold older snapshots")

// checkpointLoop keeps the WAL bounded. SQLite's automatic checkpoint
// copies the WAL back every wal_autocheckpoint pages but cannot finish
// while readers hold older snapshots, and the file keeps its high-water
// size; so whenever the writer is idle this empties the WAL with a
// TRUNCATE checkpoint. A checkpoint that fails — a full disk, on which
// the database file cannot grow — is simply tried again at the next tick:
// once space is free the WAL shrinks by itself, with no restart.
func (db *DB) checkpointLoop(every time.Duration) {
	defer close(db.stopped)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
		}
		if db.Write.Stats().InUse > 0 {
			continue // a write is running: wait for an idle tick
		}
		if st, err := os.Stat(db.Path + "-wal"); err != nil || st.Size() == 0 {
			continue // nothing to do
		}
		db.Checkpoint(context.Background())
	}
}

// Checkpoint copies the WAL into the database file and truncates it to
// zero bytes. It waits at most 100 ms for readers (it holds the only
// writer connection meanwhile) and returns [ErrCheckpointBusy] if they
// still hold older snapshots.
func (db *DB) Checkpoint(ctx context.Context) error {
	conn, err := db.Write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("wal checkpoint: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 100`); err != nil {
		return fmt.Errorf("wal checkpoint: %w", err)
	}
	defer conn.ExecContext(context.Background(), `PRAGMA busy_timeout = 10000`)
	var busy, logFrames, done int
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("wal checkpoint: %w", err)
	}
	if busy != 0 {
		return ErrCheckpointBusy
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, check bool) error {
	if check {
		_, err := migrate.Check(ctx, db.Write, MigrationSources()...)
		return err
	}
	return migrate.Run(ctx, db.Write, "", MigrationSources()...)
}
