package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/store"
)

// BackupReport describes a backup: the log it holds, verified.
type BackupReport struct {
	Path           string
	Bytes          int64
	Entries        uint64 // audit log entries in the backup
	CheckpointSize uint64 // its latest signed checkpoint
}

// ErrRollback is returned by [Restore] for a backup whose log is older
// than (or diverges from) a checkpoint this data directory has seen.
var ErrRollback = errors.New("backup is older than the log this data directory has seen")

// Backup writes an online, consistent copy of the data directory's
// SQLite database to out (which must not exist), while a server may be
// serving it: VACUUM INTO copies one read transaction's snapshot, so the
// copy is a state the database was in, with every data change beside its
// audit entry (invariant 2). The copy is written 0600 in a private
// temporary directory beside out, verified (the whole log against its
// signed checkpoints), then renamed into place. Its latest checkpoint is
// kept in [VerifiedFile] if newer than the one there, so that a later
// restore of an even older backup is refused.
//
// The backup holds ciphertext only; it is useless without the KEK and
// log.key, which are backed up apart (docs/backup.md). A PostgreSQL
// database is backed up with pg_dump.
func Backup(ctx context.Context, cfg Config, out string) (*BackupReport, error) {
	if store.IsPostgres(cfg.DSN()) {
		return nil, errors.New("backup: the database is PostgreSQL: back it up with pg_dump, and check a restored copy with custos restore --check-db (docs/backup.md)")
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("backup: %s exists; refusing to overwrite it", out)
	}
	v, err := OpenVerifier(cfg)
	if err != nil {
		return nil, err
	}
	src, err := openSQLiteReadOnly(cfg.DSN())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	tmpDir, err := os.MkdirTemp(filepath.Dir(out), ".custos-backup-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "custos.db")
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return nil, fmt.Errorf("backup: vacuum into: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	rep, err := verifyFile(ctx, tmp, v, nil)
	if err != nil {
		return nil, fmt.Errorf("backup: the copy does not verify: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Link(tmp, out); err != nil { // never replaces an out created meanwhile
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(filepath.Dir(out)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if rep.Latest != nil {
		if err := keepNewer(cfg, v, rep.Latest); err != nil {
			return nil, err
		}
	}
	st, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	r := &BackupReport{Path: out, Bytes: st.Size(), Entries: rep.Size}
	if rep.Latest != nil {
		r.CheckpointSize = rep.Latest.Size
	}
	return r, nil
}

// RestoreReport describes a restore.
type RestoreReport struct {
	BackupReport
	// Seen is the size of the checkpoint the data directory had seen,
	// which the restored log contains (0: none was kept).
	Seen uint64
	// Aside is where the database that was replaced now is ("" if there
	// was none).
	Aside string
}

// Restore replaces the data directory's SQLite database with the backup
// from, after checking that its log verifies and contains the newest
// checkpoint this data directory has seen ([VerifiedFile], kept by the
// server's log verifier and by [Backup]): a backup older than that would
// silently drop entries that tenants, witnesses and the detector have
// already seen, so it is refused with [ErrRollback]. The server must be
// stopped: a restore under a running node is refused with [ErrDataDirInUse]. The database replaced is kept beside it, renamed
// custos.db.replaced-UNIXTIME, never deleted.
func Restore(ctx context.Context, cfg Config, from string) (*RestoreReport, error) {
	if store.IsPostgres(cfg.DSN()) {
		return nil, errors.New("restore: the database is PostgreSQL: restore the pg_dump into a fresh database and check it with custos restore --check-db URL (docs/backup.md)")
	}
	// The server must be stopped: one that runs on would keep writing to
	// the database this replaces (and its file handles to it).
	unlock, err := lockDataDir(cfg)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer unlock()
	v, err := OpenVerifier(cfg)
	if err != nil {
		return nil, err
	}
	seen, err := readVerified(cfg)
	if err != nil {
		return nil, err
	}
	// Work on a private copy: the backup file itself is never written.
	dst := cfg.DSN()
	tmp := dst + ".restoring"
	os.Remove(tmp)
	if err := copyFile(from, tmp); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	rep, err := checkAgainstSeen(ctx, tmp, v, seen)
	if err != nil {
		return nil, err
	}
	out := &RestoreReport{BackupReport: BackupReport{Path: from, Entries: rep.Size}}
	if rep.Latest != nil {
		out.CheckpointSize = rep.Latest.Size
	}
	if seen != nil {
		cp, _ := audit.ParseCheckpoint(seen, v)
		out.Seen = cp.Size
	}
	if _, err := os.Stat(dst); err == nil {
		out.Aside = fmt.Sprintf("%s.replaced-%d", dst, time.Now().Unix())
		if err := os.Rename(dst, out.Aside); err != nil {
			return nil, fmt.Errorf("restore: keep the current database aside: %w", err)
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(dst + suffix); err == nil {
				if err := os.Rename(dst+suffix, out.Aside+suffix); err != nil {
					return nil, fmt.Errorf("restore: %w", err)
				}
			}
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return out, nil
}

// CheckRestored checks a database restored by other means (a pg_dump
// restored into a fresh PostgreSQL database, dsn) as [Restore] checks a
// backup before putting it in place: its log verifies and contains the
// newest checkpoint this data directory has seen. Run it before pointing
// the nodes at the database.
func CheckRestored(ctx context.Context, cfg Config, dsn string) (*BackupReport, error) {
	v, err := OpenVerifier(cfg)
	if err != nil {
		return nil, err
	}
	seen, err := readVerified(cfg)
	if err != nil {
		return nil, err
	}
	var db *sql.DB
	if store.IsPostgres(dsn) {
		sdb, err := store.Open(ctx, dsn, store.Options{MustExist: true})
		if err != nil {
			return nil, err
		}
		defer sdb.Close()
		db = sdb.Read
	} else {
		if db, err = openSQLiteReadOnly(dsn); err != nil {
			return nil, err
		}
		defer db.Close()
	}
	rep, err := checkDB(ctx, db, v, seen)
	if err != nil {
		return nil, err
	}
	out := &BackupReport{Path: redactURL(dsn), Entries: rep.Size}
	if rep.Latest != nil {
		out.CheckpointSize = rep.Latest.Size
	}
	return out, nil
}

func redactURL(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return u.Redacted()
	}
	return "[database]"
}

// checkAgainstSeen verifies the SQLite file path's log with seen (may be
// nil) as the checkpoint it must contain.
func checkAgainstSeen(ctx context.Context, path string, v note.Verifier, seen []byte) (*audit.VerifyReport, error) {
	db, err := openSQLiteReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return checkDB(ctx, db, v, seen)
}

func checkDB(ctx context.Context, db *sql.DB, v note.Verifier, seen []byte) (*audit.VerifyReport, error) {
	if seen != nil {
		// The log's keys as this database records them, from log.pub: a
		// backup from before a log key rotation cannot verify a
		// checkpoint seen after it (refused: it is a rollback).
		chain, err := audit.LoadKeyChain(ctx, db, v)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		s, err := audit.ParseCheckpoint(seen, chain)
		if err != nil {
			return nil, fmt.Errorf("restore: %s (the newest checkpoint this data directory saw) does not verify with the keys this log records — a backup from before a rotation of the log's key, or not this log: %w", VerifiedFile, err)
		}
		latest, err := audit.ReadCheckpoint(ctx, db, v)
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			latest, err = nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("restore: the backup's checkpoint: %w", err)
		}
		if latest == nil || latest.Size < s.Size {
			var have uint64
			if latest != nil {
				have = latest.Size
			}
			return nil, fmt.Errorf("%w: its log's latest checkpoint is of size %d, but this data directory has seen size %d (%s): restoring it would drop %d entries that tenants, witnesses and the detector have already seen", ErrRollback, have, s.Size, VerifiedFile, s.Size-have)
		}
	}
	rep, err := audit.Verify(ctx, db, v, audit.VerifyOptions{Trusted: seen})
	if err != nil {
		if seen != nil {
			return nil, fmt.Errorf("%w: its log does not verify against the checkpoint seen before: %v", ErrRollback, err)
		}
		return nil, fmt.Errorf("restore: the backup's log does not verify: %w", err)
	}
	return rep, nil
}

// verifyFile verifies the log in the SQLite file path.
func verifyFile(ctx context.Context, path string, v note.Verifier, trusted []byte) (*audit.VerifyReport, error) {
	db, err := openSQLiteReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return audit.Verify(ctx, db, v, audit.VerifyOptions{Trusted: trusted})
}

// openSQLiteReadOnly opens an SQLite file for reading only, beside a
// server that may be writing it (WAL mode lets a reader's transaction see
// one consistent snapshot).
func openSQLiteReadOnly(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no database at %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// keepNewer writes cp to VerifiedFile if it is newer than the one there.
func keepNewer(cfg Config, v note.Verifier, cp *audit.Checkpoint) error {
	if old, err := readVerified(cfg); err != nil {
		return err
	} else if old != nil {
		if o, err := audit.ParseCheckpoint(old, v); err == nil && o.Size >= cp.Size {
			return nil
		}
	}
	return WriteFileAtomic(cfg.Path(VerifiedFile), cp.Note)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
