package node

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// LockFile is the file in the data directory that a node opening its own
// SQLite database holds an exclusive lock on while it runs.
const LockFile = "custos.lock"

// ErrDataDirInUse is returned when another process (a running custos
// serve, a load tool) holds the data directory's lock.
var ErrDataDirInUse = errors.New("another custos process holds this data directory")

// lockDataDir takes the data directory's exclusive lock without waiting:
// two sequencers over one SQLite file, or a restore under a running
// server, would each undo what the other wrote. The lock is the
// kernel's (flock), so it goes with the process however it ends.
func lockDataDir(cfg Config) (unlock func(), err error) {
	f, err := os.OpenFile(cfg.Path(LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (stop it first)", cfg.DataDir, ErrDataDirInUse)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}
