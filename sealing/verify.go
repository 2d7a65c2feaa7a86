package sealing

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"filippo.io/age"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Problem is what VerifyTree found wrong with one file.
type Problem struct {
	// Path is the file's path under the sealed folder (slash-separated).
	Path string
	// Reason says what is wrong, and where.
	Reason string
}

func (p Problem) String() string { return p.Path + ": " + p.Reason }

// VerifyTree checks a sealed folder: every .age must decrypt with
// identities, entirely, and have a manifest whose signature verifies (its
// publisher chain checked by verifyManifest, e.g. keystore.ContentVerifier;
// nil checks only the signature against the manifest's own certificate),
// whose id is its path, and whose block hashes match its plaintext; no
// manifest may lie without its .age. It returns the problems, sorted by
// path; err is for a folder it could not walk, or ctx done.
func VerifyTree(ctx context.Context, dst string, identities []age.Identity, verifyManifest func(chain [][]byte) (*x509.Certificate, error)) (problems []Problem, err error) {
	if len(identities) == 0 {
		return nil, errors.New("sealing: no identity to decrypt with")
	}
	if verifyManifest == nil {
		verifyManifest = ownLeaf
	}
	var sealedFiles []string
	manifests := map[string]bool{}
	err = filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dst, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case strings.HasSuffix(rel, ".age"):
			sealedFiles = append(sealedFiles, strings.TrimSuffix(rel, ".age"))
		case strings.HasSuffix(rel, ".manifest"):
			manifests[strings.TrimSuffix(rel, ".manifest")] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	var mu sync.Mutex
	report := func(path, format string, args ...any) {
		mu.Lock()
		problems = append(problems, Problem{Path: path, Reason: fmt.Sprintf(format, args...)})
		mu.Unlock()
	}
	for _, rel := range sealedFiles {
		delete(manifests, rel)
	}
	for rel := range manifests {
		report(rel+".manifest", "a manifest without its sealed file %s.age", baseName(rel))
	}
	next := make(chan string)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for rel := range next {
				verifyOne(ctx, dst, rel, identities, verifyManifest, report)
			}
		})
	}
	for _, rel := range sealedFiles {
		if ctx.Err() != nil {
			break
		}
		next <- rel
	}
	close(next)
	wg.Wait()
	sort.Slice(problems, func(i, j int) bool { return problems[i].Path < problems[j].Path })
	return problems, ctx.Err()
}

func baseName(rel string) string { return rel[strings.LastIndex(rel, "/")+1:] }

// verifyOne checks the sealed medium rel.
func verifyOne(ctx context.Context, dst, rel string, identities []age.Identity, verifyManifest func([][]byte) (*x509.Certificate, error), report func(string, string, ...any)) {
	base := filepath.Join(dst, filepath.FromSlash(rel))
	agePath := rel + ".age"
	signed, err := os.ReadFile(base + ".manifest")
	if errors.Is(err, fs.ErrNotExist) {
		report(agePath, "no manifest (%s.manifest is missing)", baseName(rel))
		return
	}
	if err != nil {
		report(agePath, "the manifest: %v", err)
		return
	}
	m, err := protocol.OpenManifest(signed, verifyManifest)
	if err != nil {
		report(rel+".manifest", "bad manifest: %v", err)
		return
	}
	if m.ID != rel {
		report(rel+".manifest", "the manifest is of another medium (%q)", m.ID)
		return
	}
	f, err := os.Open(base + ".age")
	if err != nil {
		report(agePath, "%v", err)
		return
	}
	defer f.Close()
	r, err := age.Decrypt(bufio.NewReaderSize(f, 256<<10), identities...)
	if err != nil {
		report(agePath, "undecryptable: %v", err)
		return
	}
	first, last := m.Blocks(0, m.Size)
	buf := make([]byte, m.BlockSize)
	for i := first; i <= last; i++ {
		if ctx.Err() != nil {
			return
		}
		start, end, _ := m.BlockSpan(i)
		n, err := io.ReadFull(r, buf[:end-start])
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			report(agePath, "the plaintext ends at byte %d, the manifest says %d bytes", start+int64(n), m.Size)
			return
		case err != nil:
			report(agePath, "undecryptable from byte %d of the plaintext: %v", start+int64(n), err)
			return
		}
		if err := m.CheckBlock(i, buf[:n]); err != nil {
			report(agePath, "the plaintext differs from the manifest: block at byte %d", start)
			return
		}
	}
	if n, err := io.ReadFull(r, buf[:1]); n > 0 {
		report(agePath, "the plaintext is longer than the manifest's %d bytes", m.Size)
	} else if err != io.EOF {
		report(agePath, "undecryptable at the end of the plaintext (byte %d): %v", m.Size, err)
	}
}
