// Package sealing encrypts a folder of media at rest: every medium becomes
// an age file (filippo.io/age: STREAM, ChaCha20-Poly1305 over 64 KiB
// chunks, so a server can decrypt any part of it with random access) and
// gets a manifest signed by its publisher (protocol §22), written in the
// same pass over the plaintext.
//
// For SRC/a/b.flac, SealTree writes DST/a/b.flac.age and
// DST/a/b.flac.manifest (the manifest of the plaintext, media id
// "a/b.flac"), and copies SRC/catalog.json.
//
// # Never half-written, sound to re-run
//
// Every file is written to a temporary ".seal-*" file in its directory,
// synced and renamed into place, so a visible .age or .manifest is always
// whole. For one medium the steps are:
//
//  1. encrypt the source into a temporary file, hashing the plaintext for
//     its manifest in the same read; sync it;
//  2. if a manifest is visible and does not describe the new plaintext (the
//     same id, size and block hashes), remove it and sync the directory;
//  3. rename the temporary file to .age;
//  4. write the signed manifest (temporary file, rename).
//
// This keeps one invariant at every instant, whatever the moment a run is
// killed: a visible manifest describes the plaintext of the visible .age
// (its bytes, not necessarily its content type or publisher). A manifest
// becomes visible only after its .age (step 4 after 3), and an .age is
// only replaced once a manifest that would not describe it is gone (step 2
// before 3). Re-sealing unchanged bytes to a new key keeps the old
// manifest, which is still true of the new .age: media keep their
// manifest through a rotation.
//
// Hence the rule to skip a medium: DST has both files, the .age has the
// size an age file of the source's size has, its header opens with
// Options.Identities (when given: so a rotation re-seals what was sealed
// to an older key), and the manifest's id, size and block hashes match the
// source, hashed again now (which stops at the first block that differs).
// By the invariant the .age then holds the source's bytes. When only the
// manifest is stale (another content type, duration, block size or
// publisher), the manifest alone is re-signed. Anything else is sealed
// again: a re-run after a kill finishes what was incomplete and skips what
// was done. Temporary files of killed runs are removed at the start of a
// run, under the folder's lock (DST/.seal-lock), which also keeps two runs
// from writing one folder.
package sealing

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Options says how to seal.
type Options struct {
	// Recipients are who can decrypt: all of one kind, X25519 or hybrid
	// post-quantum (age refuses to mix them in one file).
	Recipients []age.Recipient
	// Identities, optional, are the identities of Recipients. When set, a
	// sealed file counts as unchanged only if its header opens with one of
	// them, so re-sealing after a new key was added re-seals what was
	// sealed to older keys. Without them a run cannot see the recipients
	// of what is sealed: use Force to re-seal to new recipients.
	Identities []age.Identity
	// Force seals every medium, unchanged or not.
	Force bool
	// Signer and Chain are the publisher's key and certificate chain (DER,
	// leaf first) that sign every medium's manifest.
	Signer crypto.Signer
	Chain  [][]byte
	// BlockSize is the manifests' block size; 0 is the protocol's default
	// (and keeps the block size of manifests that already describe their
	// medium).
	BlockSize int
	// Jobs is how many media are sealed at once; 0 is runtime.NumCPU().
	Jobs int
	// Progress receives progress: a bar on a terminal, a line per medium
	// otherwise; nil for none.
	Progress io.Writer
	// IsMedium says which files under the source are media (by path);
	// nil takes every file but catalog.json.
	IsMedium func(path string) bool
	// Info gives a medium's content type and duration (by its media id);
	// nil, or an empty content type, takes the type of its extension.
	Info func(rel string) protocol.MediaInfo
}

// Result is what a run did, by media id, sorted.
type Result struct {
	// Sealed were encrypted (and their manifests written).
	Sealed []string
	// Signed were unchanged but got a new manifest (another content type,
	// duration, block size or publisher).
	Signed []string
	// Skipped were sealed and unchanged.
	Skipped []string
	// Bytes is the plaintext encrypted.
	Bytes int64
	// Elapsed is the run's duration.
	Elapsed time.Duration
}

// ErrMixedRecipients: X25519 and hybrid post-quantum recipients in one run.
var ErrMixedRecipients = errors.New("sealing: X25519 and post-quantum (age1pq1…) recipients cannot be mixed: age refuses it, or the files would be open to a quantum computer; seal to one kind")

// testHook, in tests, sees each step of each medium (see seal).
var testHook func(event, rel string)

func hook(event, rel string) {
	if testHook != nil {
		testHook(event, rel)
	}
}

// SealTree seals every medium under src into dst (see the package
// documentation). It stops at the first error (the other media being
// sealed then are abandoned, leaving no visible partial file), or when ctx
// is cancelled; the Result says what was done until then.
func SealTree(ctx context.Context, src, dst string, opts Options) (Result, error) {
	start := time.Now()
	var res Result
	if err := checkRecipients(opts.Recipients); err != nil {
		return res, err
	}
	if opts.Signer == nil || len(opts.Chain) == 0 {
		return res, errors.New("sealing: no publisher key: every medium gets a signed manifest")
	}
	var err error
	if src, err = filepath.Abs(src); err != nil {
		return res, err
	}
	if dst, err = filepath.Abs(dst); err != nil {
		return res, err
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return res, fmt.Errorf("sealing: %s is not a folder (%v)", src, err)
	}
	if inside(dst, src) || inside(src, dst) {
		return res, fmt.Errorf("sealing: %s and %s overlap: seal into another folder", src, dst)
	}
	media, err := Media(src, opts.IsMedium)
	if err != nil {
		return res, fmt.Errorf("sealing: %w", err)
	}
	for _, rel := range media {
		if err := protocol.ValidMediaID(rel); err != nil {
			return res, fmt.Errorf("sealing: %s: %w", rel, err)
		}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return res, fmt.Errorf("sealing: %w", err)
	}
	release, err := lockTree(dst)
	if err != nil {
		return res, err
	}
	defer release()
	if _, err := removeStale(dst); err != nil {
		return res, err
	}

	var total int64
	sizes := make([]int64, len(media))
	for i, rel := range media {
		fi, err := os.Stat(filepath.Join(src, filepath.FromSlash(rel)))
		if err != nil {
			return res, fmt.Errorf("sealing: %w", err)
		}
		sizes[i] = fi.Size()
		total += fi.Size()
	}
	prog := newProgress(opts.Progress, total)
	defer prog.finish()

	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &sealer{opts: opts, src: src, dst: dst, prog: prog}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for range min(jobs, max(len(media), 1)) {
		wg.Go(func() {
			for i := range next {
				out, n, err := s.seal(ctx, media[i], sizes[i])
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil && ctx.Err() == nil {
						firstErr = fmt.Errorf("sealing: %s: %w", media[i], err)
					}
					cancel()
				case out == sealed:
					res.Sealed = append(res.Sealed, media[i])
					res.Bytes += n
				case out == signed:
					res.Signed = append(res.Signed, media[i])
				default:
					res.Skipped = append(res.Skipped, media[i])
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range media {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	sort.Strings(res.Sealed)
	sort.Strings(res.Signed)
	sort.Strings(res.Skipped)
	res.Elapsed = time.Since(start)
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil {
		firstErr = copyCatalog(src, dst)
	}
	return res, firstErr
}

// checkRecipients refuses no recipient, a mix of kinds, or a kind sealing
// does not know.
func checkRecipients(rs []age.Recipient) error {
	if len(rs) == 0 {
		return errors.New("sealing: no recipient")
	}
	kinds := map[string]bool{}
	for _, r := range rs {
		switch r.(type) {
		case *age.X25519Recipient:
			kinds["X25519"] = true
		case *age.HybridRecipient:
			kinds["post-quantum"] = true
		default:
			return fmt.Errorf("sealing: a recipient of type %T: seal to X25519 (age1…) or post-quantum (age1pq1…) recipients", r)
		}
	}
	if len(kinds) > 1 {
		return ErrMixedRecipients
	}
	return nil
}

// copyCatalog copies src/catalog.json to dst when it exists and differs.
func copyCatalog(src, dst string) error {
	b, err := os.ReadFile(filepath.Join(src, "catalog.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	if old, err := os.ReadFile(filepath.Join(dst, "catalog.json")); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := WriteFileAtomic(filepath.Join(dst, "catalog.json"), b, 0o644); err != nil {
		return fmt.Errorf("sealing: catalog.json: %w", err)
	}
	return nil
}

type outcome int

const (
	skipped outcome = iota
	signed
	sealed
)

type sealer struct {
	opts     Options
	src, dst string
	prog     *progress
}

// info is the manifest description of a medium.
func (s *sealer) info(rel string, size int64) protocol.MediaInfo {
	var info protocol.MediaInfo
	if s.opts.Info != nil {
		info = s.opts.Info(rel)
	}
	info.ID, info.Size = rel, size
	if info.ContentType == "" {
		if info.ContentType = mime.TypeByExtension(path.Ext(rel)); info.ContentType == "" {
			info.ContentType = "application/octet-stream"
		}
	}
	return info
}

// seal seals one medium, or skips it, and returns what it did and the
// plaintext bytes it encrypted.
func (s *sealer) seal(ctx context.Context, rel string, size int64) (outcome, int64, error) {
	srcPath := filepath.Join(s.src, filepath.FromSlash(rel))
	base := filepath.Join(s.dst, filepath.FromSlash(rel))
	agePath, manPath := base+".age", base+".manifest"
	info := s.info(rel, size)
	counted := false // whether the progress has seen this medium's bytes

	old := s.oldManifest(manPath)
	if !s.opts.Force && old != nil && old.ID == rel && old.Size == size && s.sealedFileOK(agePath, size) {
		fresh, err := s.build(ctx, srcPath, info, old.BlockSize, nil, true)
		if err != nil {
			return 0, 0, err
		}
		counted = true
		if old.SameMedium(fresh) {
			if old.ContentType == info.ContentType && old.Duration == info.Duration &&
				(s.opts.BlockSize == 0 || s.opts.BlockSize == old.BlockSize) &&
				bytes.Equal(old.Publisher.Raw, s.opts.Chain[0]) {
				return skipped, 0, nil
			}
			if s.opts.BlockSize != 0 && s.opts.BlockSize != old.BlockSize {
				if fresh, err = s.build(ctx, srcPath, info, s.opts.BlockSize, nil, false); err != nil {
					return 0, 0, err
				}
			}
			if err := s.writeManifest(manPath, fresh); err != nil {
				return 0, 0, err
			}
			s.prog.done("re-signed", rel+".manifest", 0)
			return signed, 0, nil
		}
	}

	if err := os.MkdirAll(filepath.Dir(agePath), 0o755); err != nil {
		return 0, 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(agePath), tempPrefix+"*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	m, err := s.encrypt(ctx, tmp, srcPath, info, !counted)
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return 0, 0, err
	}
	hook("age-written", rel)
	// Step 2: a visible manifest must describe the .age about to appear.
	if old := s.oldManifest(manPath); old == nil || !old.SameMedium(m) {
		if err := os.Remove(manPath); err == nil {
			if err := syncDir(filepath.Dir(manPath)); err != nil {
				return 0, 0, err
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return 0, 0, err
		}
	}
	hook("manifest-gone", rel)
	if err := os.Rename(tmp.Name(), agePath); err != nil {
		return 0, 0, err
	}
	hook("age-renamed", rel)
	if err := s.writeManifest(manPath, m); err != nil {
		return 0, 0, err
	}
	hook("manifest-renamed", rel)
	s.prog.done("sealed", rel, size)
	return sealed, size, nil
}

// encrypt streams srcPath through age into f, hashing the plaintext for
// its manifest in the same read, and syncs f.
func (s *sealer) encrypt(ctx context.Context, f *os.File, srcPath string, info protocol.MediaInfo, count bool) (*protocol.Manifest, error) {
	bw := bufio.NewWriterSize(f, 256<<10)
	w, err := age.Encrypt(bw, s.opts.Recipients...)
	if err != nil {
		return nil, err
	}
	m, err := s.build(ctx, srcPath, info, s.opts.BlockSize, w, count)
	if err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		return nil, err
	}
	return m, f.Sync()
}

// build reads srcPath to its end (copying it to w when w is set) and
// returns its manifest at blockSize.
func (s *sealer) build(ctx context.Context, srcPath string, info protocol.MediaInfo, blockSize int, w io.Writer, count bool) (*protocol.Manifest, error) {
	f, err := os.Open(srcPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = &sourceReader{ctx: ctx, r: f, prog: s.prog, count: count, rel: info.ID}
	if w != nil {
		r = io.TeeReader(r, w)
	}
	m, err := protocol.BuildManifest(r, info, blockSize)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w (did the file change while it was read?)", err)
	}
	return m, nil
}

// writeManifest signs m and writes it to path.
func (s *sealer) writeManifest(path string, m *protocol.Manifest) error {
	signedManifest, err := protocol.SignManifest(m, s.opts.Signer, s.opts.Chain)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, signedManifest, 0o644)
}

// oldManifest is the manifest at path, if one is there and opens (signed
// by the key of its own leaf: whoever signed it, it says what the .age
// beside it holds), else nil.
func (s *sealer) oldManifest(path string) *protocol.Manifest {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	m, err := protocol.OpenManifest(b, ownLeaf)
	if err != nil {
		return nil
	}
	return m
}

// ownLeaf is a manifest chain policy that trusts the chain's own leaf: it
// checks a manifest's integrity, not who signed it.
func ownLeaf(chain [][]byte) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(chain[0])
}

// sealedFileOK reports whether the .age at path has the size an age file
// of size plaintext bytes has (a cheap check against truncation) and, if
// Options.Identities are set, a header one of them opens.
func (s *sealer) sealedFileOK(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	hdr, err := age.ExtractHeader(bufio.NewReader(f))
	if err != nil || fi.Size() != int64(len(hdr))+EncryptedPayloadSize(size) {
		return false
	}
	if len(s.opts.Identities) > 0 {
		if _, err := age.DecryptHeader(hdr, s.opts.Identities...); err != nil {
			return false
		}
	}
	return true
}

// ChunkSize is the plaintext size of an age payload chunk.
const ChunkSize = 64 << 10

// EncryptedPayloadSize is the size of the payload (after the header) of
// an age file of size plaintext bytes: a 16-byte nonce, then the chunks,
// each with a 16-byte tag; an empty file has one empty chunk.
func EncryptedPayloadSize(size int64) int64 {
	chunks := max((size+ChunkSize-1)/ChunkSize, 1)
	return 16 + size + 16*chunks
}

// sourceReader reads a source, stops when ctx is done, and reports
// progress.
type sourceReader struct {
	ctx   context.Context
	r     io.Reader
	prog  *progress
	count bool
	rel   string
}

func (r *sourceReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if r.count {
		r.prog.add(int64(n))
	}
	hook("read", r.rel)
	return n, err
}
