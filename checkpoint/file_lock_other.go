//go:build !unix

package checkpoint

import (
	"errors"
	"os"
)

// Without flock(2) two processes could write the same file and lose commits,
// so the file store refuses to open rather than run unprotected.
func lockFile(path string) (*os.File, error) {
	return nil, errors.New("checkpoint: the file store needs flock(2), which this platform lacks; use the postgres store")
}

func unlockFile(f *os.File) error { return f.Close() }
