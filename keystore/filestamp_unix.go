//go:build unix

package keystore

import (
	"io/fs"
	"syscall"
)

// fileID returns the device and inode of a file, so that a file replaced
// by another (a rename over it) is noticed even when size and
// modification time happen to match.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
