package node

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

// Files of a log key rotation in the data directory. log.pub stays the
// log's first key, the trust root every verifier holds; log.key is the
// key in force. During a rotation the new pair is written first as
// log.next.key / log.next.pub; once the transition statement has
// committed, log.key is kept as log.retired-FROM.key (destroy it once no
// backup from before the rotation needs restoring) and log.next.key
// becomes log.key.
const (
	logNextKey = "log.next.key"
	logNextPub = "log.next.pub"
)

// settleLogKey finishes or undoes a rotation a crash interrupted: if
// log.next.key exists and the log's stored transitions make it the
// current key, the statement committed and the files are swapped now; if
// not, the statement never committed and the new pair is removed.
func settleLogKey(ctx context.Context, cfg Config, read *sql.DB, root note.Verifier) error {
	b, err := os.ReadFile(cfg.Path(logNextKey))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", logNextKey, err)
	}
	next, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", logNextKey, err)
	}
	chain, err := audit.LoadKeyChain(ctx, read, root)
	if err != nil {
		return err
	}
	if audit.IsCurrentKey(chain, next) {
		_, from := chain.Current()
		return completeLogKey(cfg, from)
	}
	for _, f := range []string{logNextKey, logNextPub} {
		if err := os.Remove(cfg.Path(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("roll back log key rotation: %w", err)
		}
	}
	return syncDir(cfg.DataDir)
}

// completeLogKey puts log.next.key in force on disk.
func completeLogKey(cfg Config, from uint64) error {
	retired := cfg.Path("log.retired-" + strconv.FormatUint(from, 10) + ".key")
	if err := os.Rename(cfg.Path("log.key"), retired); err != nil {
		return fmt.Errorf("complete log key rotation: %w", err)
	}
	if err := os.Rename(cfg.Path(logNextKey), cfg.Path("log.key")); err != nil {
		return fmt.Errorf("complete log key rotation: %w", err)
	}
	if err := os.Remove(cfg.Path(logNextPub)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("complete log key rotation: %w", err)
	}
	return syncDir(cfg.DataDir)
}

// RotateLogKey rotates the log's signing key on the node that sequences
// the log: a new Ed25519 note key (named by the log's origin) is written
// as log.next.key, the transition statement is recorded and announced
// ([vault.Vault.RotateLogKey]), and the files are swapped. A crash at any
// point leaves a data directory that starts ([settleLogKey]).
func (n *Node) RotateLogKey(ctx context.Context) (*audit.Transition, error) {
	if !n.Log.IsLeader() {
		return nil, audit.ErrNotSequencer
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, n.Config.Origin)
	if err != nil {
		return nil, fmt.Errorf("generate log key: %w", err)
	}
	next, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	if err := writeSynced(n.Config.Path(logNextKey), []byte(skey+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := writeSynced(n.Config.Path(logNextPub), []byte(vkey+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := syncDir(n.Config.DataDir); err != nil {
		return nil, err
	}
	if n.testCrashBeforeStatement {
		return nil, errors.New("test: crash before the statement")
	}
	t, err := n.Vault.RotateLogKey(ctx, next, vkey)
	if err != nil {
		// Nothing committed (or the outcome is unknown): the next start
		// settles it from what the log holds.
		return nil, err
	}
	if n.testCrashAfterStatement {
		return t, errors.New("test: crash after the statement")
	}
	return t, completeLogKey(n.Config, t.FromSize)
}

// LogKeys returns the log's key chain (its root is log.pub).
func (n *Node) LogKeys() *audit.KeyChain { return n.Log.Keys() }

func writeSynced(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
