package caddymodule

import (
	"container/list"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
	"github.com/caddy-drm/caddy-drm/sealing"
)

// Media sealed at rest (`caddy drm seal`): medium "a/b.flac" lies at the
// origin as "a/b.flac.age", an age file (ChaCha20-Poly1305 STREAM, 64 KiB
// chunks). The handler decrypts it with random access: for each chunk
// request, age's DecryptReaderAt over an io.ReaderAt whose reads are Range
// sub-requests of that request to the next handler. The file's head is
// read afresh every time (a few KiB: a medium sealed again is seen at
// once); the rest comes in read-ahead windows of two protocol chunks,
// cached across requests under the hash of the head.

const (
	sealedSuffix = ".age"
	// ageChunk is the size of an age STREAM chunk on disk: 64 KiB of
	// plaintext and its 16-byte tag.
	ageChunk = 64<<10 + 16
	// headBytes is what a chunk request reads of a sealed file's start,
	// afresh each time: the age header (a hybrid post-quantum one is
	// under 2 KiB) and the first bytes of the payload.
	headBytes = 4 << 10
	// maxWindowBytes bounds the read-ahead windows kept, all media
	// together.
	maxWindowBytes = 64 << 20
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
	windows    *windowCache

	mu     sync.Mutex
	opened map[[32]byte]*openedSealed // by the hash of the file's head
}

// openedSealed is a sealed file whose header age has read and checked:
// its reads come from the window cache alone, which each request fills
// (with its own sub-requests) before it reads.
type openedSealed struct {
	plain io.ReaderAt
	size  int64
}

// maxOpened bounds the opened files kept.
const maxOpened = 1024

// errWindowGone is a window evicted between a request's filling the cache
// and its read: the request opens the file for itself instead.
var errWindowGone = errors.New("read-ahead window evicted")

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
	if c.PassphraseFile != "" {
		if st, err := os.Stat(c.PassphraseFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("drm: at_rest: the passphrase file %s is readable by others (mode %v): chmod 600 it", c.PassphraseFile, st.Mode().Perm())
		}
	}
	return &atRest{identities: keys.Identities(), require: c.RequireSealed, windows: newWindowCache(maxWindowBytes),
		opened: map[[32]byte]*openedSealed{}}, nil
}

// checkCustody refuses secrets under a root the server's file handlers
// serve from: the at-rest keys beside the media they protect would
// protect nothing (the design this descends from kept the key in the
// file's header). A root with a placeholder counts from its fixed start
// ("/srv/{host}" as "/srv").
func checkCustody(roots []string, secrets map[string]string) error {
	for _, root := range roots {
		if i := strings.IndexByte(root, '{'); i >= 0 {
			if root = filepath.Dir(root[:i] + "x"); root == "." || root == "/" && i == 0 {
				continue // nothing fixed to check
			}
		}
		for what, file := range secrets {
			if err := keystore.CheckOutside(root, file); err != nil {
				return fmt.Errorf("drm: refusing to start: the %s %s lies under %s, which a file_server of this server serves: keep it outside every origin root", what, file, root)
			}
		}
	}
	return nil
}

// openSealed opens sealed medium id for this request: its age header read
// afresh from the origin (a small sub-request, so a medium sealed again
// is seen at once), the rest through the window cache, every sub-request
// made from r itself. It returns the plaintext reader and its size.
func (h *Handler) openSealed(r *http.Request, next caddyhttp.Handler, id string) (io.ReaderAt, int64, error) {
	a := h.atRest
	if a == nil {
		return nil, 0, fmt.Errorf("%w: %s is sealed and this server has no at_rest keys", protocol.ErrOrigin, id)
	}
	path := originPathFor(h.OriginPath, id+sealedSuffix)
	head, err := fetchRange(r, next, path, 0, headBytes, make([]byte, 0, headBytes))
	if err != nil {
		return nil, 0, err
	}
	src := &originReaderAt{r: r, next: next, path: path, size: head.total, head: head.data,
		key: sha256.Sum256(head.data), cache: a.windows,
		// Two protocol chunks' worth (four age chunks at least): few
		// sub-requests for a listener reading on, a few chunks for a seek.
		window: max(2*int64(h.ChunkSize)/(64<<10)+1, 4) * ageChunk}
	plain, size, err := age.DecryptReaderAt(src, head.total, a.identities...)
	if err != nil {
		h.logger.Error("sealed medium refused", zap.String("media", id), zap.Error(err))
		if errors.Is(err, protocol.ErrOrigin) || errors.Is(err, protocol.ErrNotFound) || errors.Is(err, protocol.ErrOriginTimeout) {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("%w: %s: %w", protocol.ErrOrigin, id, err)
	}
	return plain, size, nil
}

// readSealed reads plaintext [off, off+len(dst)) of sealed medium id into
// dst. A chunk that fails authentication is refused, and logged with its
// offset: nothing of it is served.
func (h *Handler) readSealed(r *http.Request, next caddyhttp.Handler, item catalogItem, off int64, dst []byte) error {
	if err := h.readOpened(r, next, item, off, dst); err == nil {
		return nil
	} else if !errors.Is(err, errWindowGone) && !errors.Is(err, errNotOpened) {
		return err
	}
	plain, size, err := h.openSealed(r, next, item.ID)
	if err != nil {
		return err
	}
	if size != item.Size {
		// Sealed again with other contents since the catalog was read.
		h.catalog.stale()
		return fmt.Errorf("%w: %s is %d bytes sealed but %d in the catalog", protocol.ErrOrigin, item.ID, size, item.Size)
	}
	n, err := plain.ReadAt(dst, off)
	if n == len(dst) {
		return nil
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

var errNotOpened = errors.New("not opened")

// readOpened is readSealed's fast path: the file's head read afresh, the
// windows the read needs put in the cache with this request's
// sub-requests, then the file opened once (per head) reads from the cache
// alone — age parses a header and checks the last chunk once per sealing
// of a file, not once per chunk.
func (h *Handler) readOpened(r *http.Request, next caddyhttp.Handler, item catalogItem, off int64, dst []byte) error {
	a := h.atRest
	path := originPathFor(h.OriginPath, item.ID+sealedSuffix)
	head, err := fetchRange(r, next, path, 0, headBytes, make([]byte, 0, headBytes))
	if err != nil {
		return err
	}
	src := &originReaderAt{r: r, next: next, path: path, size: head.total, head: head.data,
		key: sha256.Sum256(head.data), cache: a.windows, window: max(2*int64(h.ChunkSize)/(64<<10)+1, 4) * ageChunk}
	// Where the age chunks of [off, off+len(dst)) lie: after the header,
	// whose length the file's size and the plaintext's give.
	payload := head.total - sealing.EncryptedPayloadSize(item.Size) + 16
	if payload <= 0 || payload > int64(len(head.data)) || len(dst) == 0 {
		return errNotOpened // sealed again with other contents, or an empty read: the slow path sorts it out
	}
	first, last := off/(64<<10), (off+int64(len(dst))-1)/(64<<10)
	lastChunk := payload + (max(item.Size-1, 0)/(64<<10))*ageChunk
	if err := src.fill(payload+first*ageChunk, min(payload+(last+1)*ageChunk, head.total)); err != nil {
		return err
	}
	a.mu.Lock()
	op := a.opened[src.key]
	a.mu.Unlock()
	if op == nil {
		if err := src.fill(lastChunk, head.total); err != nil {
			return err
		}
		plain, size, err := age.DecryptReaderAt(&cachedReaderAt{src}, head.total, a.identities...)
		if err != nil {
			return errNotOpened // the slow path logs why
		}
		op = &openedSealed{plain, size}
		a.mu.Lock()
		if len(a.opened) >= maxOpened {
			clear(a.opened)
		}
		a.opened[src.key] = op
		a.mu.Unlock()
	}
	if op.size != item.Size {
		return errNotOpened
	}
	if n, err := op.plain.ReadAt(dst, off); n != len(dst) {
		if errors.Is(err, errWindowGone) {
			return err
		}
		return errNotOpened // a chunk that does not decrypt: the slow path reads it afresh, and logs it
	}
	return nil
}

// fill puts the windows covering [from, to) in the cache, fetching the
// missing ones with the request's sub-requests.
func (o *originReaderAt) fill(from, to int64) error {
	for w := max(from, int64(len(o.head))) / o.window * o.window; w < to; w += o.window {
		if _, ok := o.cache.get(o.key, w); ok {
			continue
		}
		buf := make([]byte, 1)
		if _, err := o.ReadAt(buf, max(w, int64(len(o.head)))); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// cachedReaderAt reads a file's head and its cached windows only.
type cachedReaderAt struct{ o *originReaderAt }

func (c *cachedReaderAt) ReadAt(p []byte, off int64) (int, error) { return c.o.read(p, off, false) }

// originReaderAt reads one request's view of an age file at the origin:
// its head as fetched, the rest in read-ahead windows from the cache or,
// when missing, from the origin with Range sub-requests of r. age asks for
// one 64 KiB chunk per call, and a sub-request per chunk would not keep up.
type originReaderAt struct {
	r      *http.Request
	next   caddyhttp.Handler
	path   string
	size   int64
	head   []byte
	key    [32]byte // names this sealing of the file: windows are cached under it
	cache  *windowCache
	window int64
}

func (o *originReaderAt) ReadAt(p []byte, off int64) (int, error) { return o.read(p, off, true) }

// read copies [off, off+len(p)) from the head and the windows; a missing
// window is fetched with the request's sub-request if fetch, else it is
// errWindowGone.
func (o *originReaderAt) read(p []byte, off int64, fetch bool) (int, error) {
	if off < 0 || off >= o.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < o.size {
		if off < int64(len(o.head)) {
			k := copy(p[n:], o.head[off:])
			n, off = n+k, off+int64(k)
			continue
		}
		w := off / o.window * o.window
		data, ok := o.cache.get(o.key, w)
		if !ok && !fetch {
			return n, errWindowGone
		}
		if !ok {
			length := min(o.window, o.size-w)
			s, err := fetchRange(o.r, o.next, o.path, w, length, make([]byte, 0, length))
			if err != nil {
				return n, err
			}
			if s.total != o.size || int64(len(s.data)) != length {
				return n, fmt.Errorf("%w: %s changed at the origin (%d bytes, was %d)", protocol.ErrOrigin, o.path, s.total, o.size)
			}
			data = s.data
			o.cache.put(o.key, w, data)
		}
		k := copy(p[n:], data[off-w:])
		n, off = n+k, off+int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// windowCache holds read-ahead windows of sealed files, least recently
// used first out, bounded in bytes. A window is keyed by the hash of its
// file's head (the age header, with its random nonce): a file sealed again
// is a new key, and its old windows age out.
type windowCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	lru   *list.List // of *cachedWindow, most recent first
	index map[windowKey]*list.Element
}

type windowKey struct {
	file [32]byte
	off  int64
}

type cachedWindow struct {
	key  windowKey
	data []byte
}

func newWindowCache(max int64) *windowCache {
	return &windowCache{max: max, lru: list.New(), index: map[windowKey]*list.Element{}}
}

func (c *windowCache) get(file [32]byte, off int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[windowKey{file, off}]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedWindow).data, true
}

func (c *windowCache) put(file [32]byte, off int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := windowKey{file, off}
	if _, ok := c.index[k]; ok {
		return
	}
	c.index[k] = c.lru.PushFront(&cachedWindow{k, data})
	c.bytes += int64(len(data))
	for c.bytes > c.max && c.lru.Len() > 1 {
		old := c.lru.Remove(c.lru.Back()).(*cachedWindow)
		delete(c.index, old.key)
		c.bytes -= int64(len(old.data))
	}
}
