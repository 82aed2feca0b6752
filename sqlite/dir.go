package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// At rest, the database holds ciphertext, blind indexes and tokens, but
// also what an insider with a shell should not browse: who accessed
// what, when. Its directory is the owner's alone (0700) and its files are
// the owner's alone (0600). SQLite creates the -wal and -shm files with
// the mode of the database file, so creating that file 0600 before
// SQLite opens it is what keeps all three private.

// ensureDir creates the directory of path, 0700, if it is missing.
func ensureDir(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}

// createPrivate creates the database file 0600 if it does not exist yet.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return f.Close()
}

// CheckFiles refuses database files (path, its -wal and -shm) that group
// or others may read or write, naming the file and the fix.
func CheckFiles(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("check database file: %w", err)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("database file %s is mode %04o, open to group or others: it must be private to custos (chmod 600 %s)", p, perm, p)
		}
	}
	return nil
}

// CheckDir refuses a data directory that group or others may enter, list
// or write, naming it and the fix.
func CheckDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("check data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("data directory %s is mode %04o, open to group or others: it must be private to custos (chmod 700 %s)", dir, perm, dir)
	}
	return nil
}
