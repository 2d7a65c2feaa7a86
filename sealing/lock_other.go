//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sealing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// lockTree takes dst's lock where flock(2) is missing: the lock file
// created exclusively, removed on release; a killed run leaves it, and
// the error says to remove it if no seal is running.
func lockTree(dst string) (release func(), err error) {
	path := filepath.Join(dst, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("sealing: another seal is writing %s; remove %s if none is running", dst, path)
	}
	if err != nil {
		return nil, fmt.Errorf("sealing: lock %s: %w", dst, err)
	}
	f.Close()
	return func() { os.Remove(path) }, nil
}
