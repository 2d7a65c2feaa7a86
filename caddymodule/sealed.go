package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// Media sealed at rest (`caddy drm seal`): medium "a/b.flac" lies at the
// origin as "a/b.flac.age", an age file (ChaCha20-Poly1305 STREAM, 64 KiB
// chunks). The handler decrypts it with random access: age's
// DecryptReaderAt over an io.ReaderAt whose reads are Range sub-requests
// to the next handler, reading ahead a protocol chunk's worth of age
// chunks at a time. One reader per medium is kept: opening one reads the
// header and the last age chunk.

const (
	sealedSuffix = ".age"
	// ageChunk is the size of an age STREAM chunk on disk: 64 KiB of
	// plaintext and its 16-byte tag.
	ageChunk = 64<<10 + 16
	// maxSealedReaders bounds the readers kept (a header and a few
	// read-ahead windows each).
	maxSealedReaders = 1024
	// sealedWindows is how many read-ahead windows a reader keeps: a few
	// listeners of one medium at different places.
	sealedWindows = 4
)

// AtRestConfig decrypts media sealed at rest.
type AtRestConfig struct {
	// Keys is the file of at-rest identities (`caddy drm keys new`),
	// protected by a passphrase. It must not lie under the origin's root.
	Keys string `json:"keys,omitempty"`
	// PassphraseFile holds the passphrase of Keys; else the environment
	// variable PassphraseEnv (default DRM_AT_REST_PASSPHRASE) does.
	PassphraseFile string `json:"passphrase_file,omitempty"`
	PassphraseEnv  string `json:"passphrase_env,omitempty"`
	// RequireSealed refuses media that are not sealed: a plain file at
	// the origin is then not served.
	RequireSealed bool `json:"require_sealed,omitempty"`
}

// atRest is what Provision builds from an AtRestConfig.
type atRest struct {
	identities []age.Identity
	require    bool

	mu      sync.Mutex
	readers map[sealedKey]*sealedReader
}

type sealedKey struct {
	id      string
	encSize int64 // a re-sealed medium (another size) gets a new reader
}

// sealedReader is an opened sealed medium.
type sealedReader struct {
	plain io.ReaderAt
	size  int64 // plaintext
}

func (h *Handler) setupAtRest() (*atRest, error) {
	c := h.AtRest
	if c == nil {
		return nil, nil
	}
	if c.Keys == "" {
		return nil, errors.New("drm: at_rest needs keys (the identity file `caddy drm keys new` makes)")
	}
	if c.PassphraseEnv == "" {
		c.PassphraseEnv = "DRM_AT_REST_PASSPHRASE"
	}
	pass, err := keystore.ReadPassphrase(c.PassphraseFile, c.PassphraseEnv)
	if err != nil {
		return nil, fmt.Errorf("drm: at_rest: %w", err)
	}
	keys, err := keystore.LoadAtRestKeys(c.Keys, pass)
	if err != nil {
		return nil, fmt.Errorf("drm: at_rest: %w", err)
	}
	return &atRest{identities: keys.Identities(), require: c.RequireSealed, readers: map[sealedKey]*sealedReader{}}, nil
}

// checkCustody refuses secrets under a root the server's file handlers
// serve from: the at-rest keys beside the media they protect would
// protect nothing (the design this descends from kept the key in the
// file's header).
func checkCustody(roots []string, secrets map[string]string) error {
	for what, file := range secrets {
		if file == "" {
			continue
		}
		f := realPath(file)
		for _, root := range roots {
			r := realPath(root)
			if rel, err := filepath.Rel(r, f); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return fmt.Errorf("drm: refusing to start: the %s %s lies under %s, which a file_server of this server serves: keep it outside every origin root", what, file, root)
			}
		}
	}
	return nil
}

// realPath is path made absolute, symbolic links resolved where it exists.
func realPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// openSealed returns the reader of sealed medium id, whose age file has
// encSize bytes, opening it (header and last chunk read and checked) the
// first time.
func (h *Handler) openSealed(r *http.Request, next caddyhttp.Handler, id string, encSize int64) (*sealedReader, error) {
	a := h.atRest
	if a == nil {
		return nil, fmt.Errorf("%w: %s is sealed and this server has no at_rest keys", protocol.ErrOrigin, id)
	}
	key := sealedKey{id, encSize}
	a.mu.Lock()
	sr, ok := a.readers[key]
	a.mu.Unlock()
	if ok {
		return sr, nil
	}
	src := &originReaderAt{
		// The reader outlives this request: its sub-requests keep the
		// request's values (Caddy's replacer, the server) without its
		// cancellation.
		base: r.WithContext(context.WithoutCancel(r.Context())),
		next: next, path: originPathFor(h.OriginPath, id+sealedSuffix), size: encSize,
		// Two protocol chunks' worth (four age chunks at least): few
		// sub-requests for a listener reading on, a few chunks for a seek.
		window: max(2*int64(h.ChunkSize)/(64<<10)+1, 4) * ageChunk,
	}
	plain, size, err := age.DecryptReaderAt(src, encSize, a.identities...)
	if err != nil {
		h.logger.Error("sealed medium refused", zap.String("media", id), zap.Error(err))
		if errors.Is(err, protocol.ErrOrigin) || errors.Is(err, protocol.ErrNotFound) || errors.Is(err, protocol.ErrOriginTimeout) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %w", protocol.ErrOrigin, id, err)
	}
	sr = &sealedReader{plain: plain, size: size}
	a.mu.Lock()
	if len(a.readers) >= maxSealedReaders {
		clear(a.readers)
	}
	a.readers[key] = sr
	a.mu.Unlock()
	return sr, nil
}

// readSealed reads plaintext [off, off+len(dst)) of sealed medium id into
// dst. A chunk that fails authentication is refused, and logged with its
// offset: nothing of it is served.
func (h *Handler) readSealed(r *http.Request, next caddyhttp.Handler, item catalogItem, off int64, dst []byte) error {
	var n int
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var sr *sealedReader
		if sr, err = h.openSealed(r, next, item.ID, item.encSize); err != nil {
			return err
		}
		if n, err = sr.plain.ReadAt(dst, off); n == len(dst) {
			return nil
		}
		// The file may have been sealed again (a key rotation) since the
		// reader read its header: read the header again, once.
		h.forgetSealed(item.ID, item.encSize, sr)
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("the sealed medium ends at %d", off+int64(n))
	}
	h.logger.Error("sealed medium refused: a chunk does not decrypt", zap.String("media", item.ID), zap.Int64("offset", off+int64(n)), zap.Error(err))
	if errors.Is(err, protocol.ErrOrigin) || errors.Is(err, protocol.ErrNotFound) || errors.Is(err, protocol.ErrOriginTimeout) {
		return err
	}
	return fmt.Errorf("%w: %s at offset %d: %w", protocol.ErrOrigin, item.ID, off+int64(n), err)
}

// forgetSealed drops the reader of a medium, if it is still sr.
func (h *Handler) forgetSealed(id string, encSize int64, sr *sealedReader) {
	a := h.atRest
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.readers[sealedKey{id, encSize}] == sr {
		delete(a.readers, sealedKey{id, encSize})
	}
}

// originReaderAt reads an age file at the origin with Range sub-requests,
// a read-ahead window at a time: age asks for one 64 KiB chunk per call,
// and a sub-request per chunk would not keep up.
type originReaderAt struct {
	base   *http.Request
	next   caddyhttp.Handler
	path   string
	size   int64
	window int64

	mu      sync.Mutex
	windows []readWindow // most recent first
}

type readWindow struct {
	off  int64
	data []byte
}

func (o *originReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= o.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), o.size)
	o.mu.Lock()
	for i, w := range o.windows {
		if off >= w.off && end <= w.off+int64(len(w.data)) {
			n := copy(p, w.data[off-w.off:])
			o.windows = append(append([]readWindow{w}, o.windows[:i]...), o.windows[i+1:]...)
			o.mu.Unlock()
			return o.result(n, len(p))
		}
	}
	o.mu.Unlock()
	// age reads its header in small pieces, then one STREAM chunk per
	// call: read ahead only for the latter.
	ahead := int64(1 << 10)
	if end-off >= ageChunk {
		ahead = o.window
	}
	length := min(max(end-off, ahead), o.size-off)
	s, err := fetchRange(o.base, o.next, o.path, off, length, make([]byte, 0, length))
	if err != nil {
		return 0, err
	}
	if s.total != o.size {
		return 0, fmt.Errorf("%w: %s changed at the origin (%d bytes, was %d)", protocol.ErrOrigin, o.path, s.total, o.size)
	}
	o.mu.Lock()
	o.windows = append([]readWindow{{off, s.data}}, o.windows...)
	if len(o.windows) > sealedWindows {
		o.windows = o.windows[:sealedWindows]
	}
	o.mu.Unlock()
	return o.result(copy(p, s.data), len(p))
}

func (o *originReaderAt) result(n, want int) (int, error) {
	if n < want {
		return n, io.EOF
	}
	return n, nil
}
