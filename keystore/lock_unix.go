//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package keystore

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockDir takes the exclusive lock of the PKI directory dir, waiting while
// another process or goroutine holds it, and returns its release.
//
// Every change to a revocation database and its CRLs is a read, modify and
// write; two `caddy drm pki revoke` run at once would otherwise both read
// the same database and one revocation would be lost. The lock is flock(2)
// on lockName, which the kernel releases when the holder exits, so a
// crashed command never leaves the directory locked. The file stays: removing
// it while another process waits on it would let a third lock a new file.
// flock works between goroutines too, because each call opens the file
// anew.
func lockDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: lock %s: %w", dir, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore: lock %s: %w", path, err)
	}
	// Closing the last descriptor of the open file releases the lock.
	return func() { f.Close() }, nil
}
