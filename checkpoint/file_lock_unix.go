//go:build unix

package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock(2) on path (created if
// needed). flock locks belong to the open file description, so a second
// FileStore in the same process conflicts just like another process does, and
// the kernel drops the lock if the process dies.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("checkpoint: lock %s is held by another prismsync (only one process may use a checkpoint file): %w",
				path, ErrLocked)
		}
		return nil, fmt.Errorf("checkpoint: lock %s: %w", path, err)
	}
	return f, nil
}

// unlockFile releases the lock. The lock file itself stays: removing it would
// let a process that opened the old inode and one that creates a new one
// both believe they hold the lock.
func unlockFile(f *os.File) error {
	return f.Close()
}
