package keystore

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"
)

// racyWindow is how recent a file's modification time must be for its
// stamp to be distrusted. Timestamps are coarse (a kernel tick on ext4 or
// tmpfs, 1 s on HFS+, 2 s on FAT): a file rewritten with the same size
// within the tick of its previous write keeps its stamp. So while the
// modification time is within racyWindow of now, an unchanged stamp is
// confirmed by re-reading and hashing the content; once it is older, any
// later write must move the modification time.
const racyWindow = 2 * time.Second

// fileStamp is what stat says about a file: enough to notice a rewrite
// (size, modification time) and a replacement (device and inode).
type fileStamp struct {
	size, mtime int64
	dev, ino    uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	dev, ino := fileID(fi)
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), dev: dev, ino: ino}
}

// crlFile is one configured CRL file and the CRLs last read from it.
type crlFile struct {
	path    string
	stamp   fileStamp
	sum     [sha256.Size]byte // of the content last read
	known   bool              // stamp and sum describe the content last read
	settled bool              // the stamp alone tells whether the file changed
	crls    []*crl            // nil while the file is missing or bad
	err     error             // why crls is nil
}

// refresh brings f up to date at now, reading the file again only when it
// may have changed. changed reports that f's CRLs were replaced; err, when
// changed, whether they were read (nil) or the file is now treated as
// missing. A failure is reported once, not at every refresh.
func (f *crlFile) refresh(issuers []*x509.Certificate, now time.Time) (changed bool, err error) {
	if fi, err := os.Stat(f.path); err == nil && f.known && f.settled && stampOf(fi) == f.stamp {
		return false, nil
	}
	data, stamp, err := readStamped(f.path)
	if err != nil {
		if f.err != nil && f.err.Error() == err.Error() {
			return false, nil
		}
		*f = crlFile{path: f.path, err: err}
		return true, err
	}
	sum := sha256.Sum256(data)
	same := f.known && sum == f.sum
	f.stamp, f.sum, f.known = stamp, sum, true
	f.settled = time.Unix(0, stamp.mtime).Before(now.Add(-racyWindow))
	if same {
		return false, nil
	}
	f.crls, f.err = loadCRLs(data, f.path, issuers)
	return true, f.err
}

// readStamped reads a regular file and stats the same open file, so that
// the stamp belongs to the content read.
func readStamped(path string) ([]byte, fileStamp, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keystore: CRL file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keystore: CRL file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxCRLFileSize {
		return nil, fileStamp{}, fmt.Errorf("keystore: CRL file %s: not a regular file of at most %d bytes", path, maxCRLFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxCRLFileSize+1))
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keystore: CRL file: %w", err)
	}
	if len(data) > maxCRLFileSize {
		return nil, fileStamp{}, fmt.Errorf("keystore: CRL file %s: larger than %d bytes", path, maxCRLFileSize)
	}
	return data, stampOf(fi), nil
}

// loadCRLs parses and verifies every CRL of a file. One bad CRL makes the
// whole file bad: a file is published as a unit.
func loadCRLs(data []byte, path string, issuers []*x509.Certificate) ([]*crl, error) {
	lists, err := parseCRLFile(data)
	if err != nil {
		return nil, fmt.Errorf("keystore: CRL file %s: %w", path, err)
	}
	crls := make([]*crl, len(lists))
	for i, rl := range lists {
		if crls[i], err = newCRL(rl, path, issuers); err != nil {
			return nil, fmt.Errorf("keystore: CRL file %s: %w", path, err)
		}
	}
	return crls, nil
}
