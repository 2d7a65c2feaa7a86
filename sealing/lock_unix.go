//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sealing

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockTree takes dst's lock for a run: flock(2) on dst/.seal-lock, which
// the kernel releases if the run is killed. A second run at once is
// refused rather than queued.
func lockTree(dst string) (release func(), err error) {
	path := filepath.Join(dst, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sealing: lock %s: %w", dst, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("sealing: another seal is writing %s", dst)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sealing: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
