//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// lockDir takes the PKI directory's lock where flock(2) is missing: lockName
// created exclusively and removed on release. It fails at once when the
// file exists, because a crashed holder would otherwise block every later
// command; the error says to remove the file if no command is running.
func lockDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("keystore: %s is locked by another command; remove %s if none is running", dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: lock %s: %w", dir, err)
	}
	f.Close()
	return func() { os.Remove(path) }, nil
}
