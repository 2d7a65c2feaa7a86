package sealing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// tempPrefix starts the name of every temporary file sealing writes, in
// the directory of the file it will become. No medium has such a name, and
// the extension is not a medium's, so nothing serves one; a later run
// removes those a killed run left.
const tempPrefix = ".seal-"

// lockName is the lock file of a sealed folder: one run at a time (and
// only then are the temporary files of earlier runs known to be stale).
const lockName = ".seal-lock"

// WriteFileAtomic writes data to path with perm so that path never holds
// a partial file: a temporary file (".seal-*") in the same directory,
// synced, renamed over path, and the directory synced, so that after a
// crash path holds the old contents or the new, and a reader sees one or
// the other.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), tempPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chmod(perm), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the names created or removed in dir durable. Windows
// cannot sync a directory and does not need to.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Media lists the media under src: the regular files (or links to them)
// isMedium accepts (every file when it is nil) except src/catalog.json,
// as slash-separated paths relative to src, sorted.
func Media(src string, isMedium func(path string) bool) ([]string, error) {
	var media []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "catalog.json" || isMedium != nil && !isMedium(path) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		media = append(media, rel)
		return nil
	})
	sort.Strings(media)
	return media, err
}

// removeStale removes the temporary files killed runs left under dst.
// The caller holds dst's lock, so no other run is writing them.
func removeStale(dst string) (int, error) {
	n := 0
	err := filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tempPrefix) && path != filepath.Join(dst, lockName) {
			if err := os.Remove(path); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("sealing: removing temporary files of an earlier run: %w", err)
	}
	return n, nil
}

// inside reports whether path is root or lies under it (both absolute
// and clean).
func inside(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && (rel == "." || rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}
