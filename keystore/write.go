package keystore

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// writeNew atomically creates path with data and perm, failing with an
// error wrapping fs.ErrExist if path already exists. The data is synced to
// a temporary file in the same directory before a hard link publishes it,
// so readers never observe a partial file and nothing is ever overwritten
// (a rename would silently replace a file created concurrently). Keys and
// certificates are written this way: replacing one is never routine.
func writeNew(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	// The temporary name is removed in every case; after a successful link
	// the data lives on under path.
	defer func() {
		if rmErr := os.Remove(tmp); rmErr != nil && err == nil {
			err = fmt.Errorf("keystore: remove temporary file: %w", rmErr)
		}
	}()
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeReplace atomically replaces (or creates) path with data and perm:
// a synced temporary file renamed over it, then the directory synced, so
// that after a crash path holds either the old or the new contents, never
// a mixture or nothing. Files that change on every run — revocation
// databases, CRLs — are written this way, under the directory's lock
// (lockDir) so that concurrent writers cannot lose each other's updates.
func writeReplace(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data with perm to a new temporary file next to path,
// syncs it and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("keystore: write %s: %w", path, err)
	}
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("keystore: write %s: %w", path, err)
	}
	// CreateTemp uses 0600, so a key is never readable by others, not even
	// between creation and this Chmod.
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("keystore: write %s: %w", path, err)
	}
	return tmp.Name(), nil
}

// syncDir makes a new name in dir durable: without it a crash can lose a
// renamed or linked file even though its data was synced. Windows cannot
// sync a directory and does not need to.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keystore: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keystore: sync %s: %w", dir, err)
	}
	return nil
}
