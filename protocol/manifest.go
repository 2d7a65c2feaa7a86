package protocol

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// Manifests (§22): a publisher — its own key, certified under a content
// authority the client configures, never the server's — signs, for every
// medium, its id, size, content type, duration and the SHA-256 of each of
// its blocks. The client checks every byte it receives against the
// manifest before any of it reaches the player, so a compromised or
// misconfigured server, or a corrupted origin, cannot make it play
// anything the publisher did not sign.

var (
	// ErrManifest: a signed manifest that does not parse, whose signature
	// does not verify, or whose publisher chain the client's policy
	// refuses. Client side; it has no wire code.
	ErrManifest = errors.New("manifest refused")
	// ErrManifestMismatch: bytes of a medium that its manifest does not
	// vouch for (a *BlockMismatch says where).
	ErrManifestMismatch = errors.New("medium does not match its manifest")
)

const (
	// defaultManifestBlockSize is the block size BuildManifest uses when
	// asked for none (it doubles it while the medium has too many blocks).
	defaultManifestBlockSize = 64 << 10
	minManifestBlockSize     = 4 << 10
	maxManifestBlockSize     = 16 << 20
	// maxManifestBlocks bounds the hashes of one manifest, so that the
	// manifest stays below maxManifestSize whatever its id.
	maxManifestBlocks = 100_000
	// maxManifestMediaSize bounds a medium's size (2^50 bytes).
	maxManifestMediaSize = 1 << 50
	// maxManifestSize bounds a manifest's bytes, maxSignedManifestSize the
	// signed file's (what a manifest reply carries: at most MaxChunkSize,
	// so it fits in a sealed reply).
	maxManifestSize       = 5 << 20
	maxSignedManifestSize = 8 << 20
	maxContentTypeLength  = 255
	// maxDuration bounds a duration in seconds (2^32), so that its
	// decimal form stays short.
	maxDuration = 1 << 32
	// manifestVersion is the manifest's "v".
	manifestVersion = 1
)

// Manifest describes one medium as its publisher signed it.
type Manifest struct {
	// ID is the medium's media id.
	ID string
	// Size is the medium's size in bytes.
	Size int64
	// ContentType is the medium's media type.
	ContentType string
	// Duration in seconds, zero when unknown.
	Duration float64
	// BlockSize is the size of every block but the last (a power of two,
	// 4 KiB … 16 MiB).
	BlockSize int
	// Publisher is the certificate whose key signed the manifest, as the
	// caller's chain policy returned it; set by OpenManifest.
	Publisher *x509.Certificate

	hashes [][sha256.Size]byte
}

// BlockMismatch says where a medium differs from its manifest.
type BlockMismatch struct {
	// Media is the media id.
	Media string
	// Offset is the first byte of the block that does not match.
	Offset int64
}

func (e *BlockMismatch) Error() string {
	return fmt.Sprintf("%v: %q, block at byte %d", ErrManifestMismatch, e.Media, e.Offset)
}

func (e *BlockMismatch) Unwrap() error { return ErrManifestMismatch }

// manifestBlockCount is how many blocks a medium of size bytes has:
// ⌈size/blockSize⌉, and 1 for an empty medium, whose block 0 is empty.
func manifestBlockCount(size int64, blockSize int) int64 {
	return int64(ChunkCount(uint64(size), blockSize))
}

// BuildManifest reads r to its end and makes the manifest of the medium
// info describes (its ID, Size, ContentType and Duration; Title is not
// part of a manifest), with blocks of blockSize bytes. blockSize 0 picks
// defaultManifestBlockSize, doubled while the medium (if info.Size ≥ 0)
// would have more blocks than a manifest may hold. When info.Size ≥ 0, the
// bytes read must be exactly that many; with info.Size < 0 the size is
// what r holds.
func BuildManifest(r io.Reader, info MediaInfo, blockSize int) (*Manifest, error) {
	if blockSize == 0 {
		blockSize = defaultManifestBlockSize
		for info.Size >= 0 && blockSize < maxManifestBlockSize && manifestBlockCount(info.Size, blockSize) > maxManifestBlocks {
			blockSize *= 2
		}
	}
	m := &Manifest{ID: info.ID, Size: info.Size, ContentType: info.ContentType, Duration: info.Duration, BlockSize: blockSize}
	if err := m.checkFields(false); err != nil {
		return nil, err
	}
	buf := make([]byte, blockSize)
	var size int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || size == 0 && err == io.EOF {
			m.hashes = append(m.hashes, sha256.Sum256(buf[:n]))
			size += int64(n)
			if len(m.hashes) > maxManifestBlocks || size > maxManifestMediaSize || info.Size >= 0 && size > info.Size {
				return nil, fmt.Errorf("protocol: manifest of %q: the medium is longer than its size (%d) or than %d blocks of %d bytes", info.ID, info.Size, maxManifestBlocks, blockSize)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("protocol: manifest of %q: %w", info.ID, err)
		}
	}
	if info.Size >= 0 && size != info.Size {
		return nil, fmt.Errorf("protocol: manifest of %q: read %d bytes of a %d-byte medium", info.ID, size, info.Size)
	}
	m.Size = size
	if err := m.checkFields(true); err != nil {
		return nil, err
	}
	return m, nil
}

// checkFields applies §22's rules to a manifest's fields (and, with
// hashes, to the number of its hashes).
func (m *Manifest) checkFields(hashes bool) error {
	if err := ValidMediaID(m.ID); err != nil {
		return fmt.Errorf("%w: %w", ErrManifest, err)
	}
	switch {
	case hashes && (m.Size < 0 || m.Size > maxManifestMediaSize):
		return fmt.Errorf("%w: size %d", ErrManifest, m.Size)
	case len(m.ContentType) > maxContentTypeLength:
		return fmt.Errorf("%w: a content type of %d bytes", ErrManifest, len(m.ContentType))
	case !(m.Duration >= 0 && m.Duration < maxDuration): // NaN fails too
		return fmt.Errorf("%w: duration %v", ErrManifest, m.Duration)
	case m.BlockSize < minManifestBlockSize || m.BlockSize > maxManifestBlockSize || m.BlockSize&(m.BlockSize-1) != 0:
		return fmt.Errorf("%w: block size %d (a power of two, %d … %d)", ErrManifest, m.BlockSize, minManifestBlockSize, maxManifestBlockSize)
	case hashes && int64(len(m.hashes)) != manifestBlockCount(m.Size, m.BlockSize):
		return fmt.Errorf("%w: %d hashes for %d blocks", ErrManifest, len(m.hashes), manifestBlockCount(m.Size, m.BlockSize))
	case hashes && len(m.hashes) > maxManifestBlocks:
		return fmt.Errorf("%w: %d blocks (at most %d)", ErrManifest, len(m.hashes), maxManifestBlocks)
	}
	for i := 0; i < len(m.ContentType); i++ {
		if c := m.ContentType[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: content type %q is not printable ASCII", ErrManifest, m.ContentType)
		}
	}
	return nil
}

// Blocks returns the blocks first … last (inclusive) that cover the
// bytes [from, to) of the medium (clipped to the medium): what a client
// must have, whole, to check those bytes. An empty range gives the one
// block at its position, so chunk 0 of an empty medium maps to its one,
// empty, block. It is the one place that knows how bytes map to blocks.
func (m *Manifest) Blocks(from, to int64) (first, last int64) {
	bs, n := int64(m.BlockSize), int64(len(m.hashes))
	from = min(max(from, 0), m.Size)
	to = min(max(to, from), m.Size)
	first = min(from/bs, max(n-1, 0))
	if to == from {
		return first, first
	}
	return first, (to - 1) / bs
}

// BlockSpan is the byte range [start, end) of block i, and whether the
// medium has that block (an empty medium has block 0, empty).
func (m *Manifest) BlockSpan(i int64) (start, end int64, ok bool) {
	if i < 0 || i >= int64(len(m.hashes)) {
		return 0, 0, false
	}
	s, e, ok := ChunkSpan(uint64(i), uint64(m.Size), m.BlockSize)
	return int64(s), int64(e), ok
}

// CheckBlock checks that data is block i of the medium: its exact length
// and its hash. A mismatch is a *BlockMismatch (wrapping
// ErrManifestMismatch) naming the block's first byte.
func (m *Manifest) CheckBlock(i int64, data []byte) error {
	start, end, ok := m.BlockSpan(i)
	switch {
	case !ok:
		offset := m.Size
		if i < 0 {
			offset = 0
		}
		return &BlockMismatch{Media: m.ID, Offset: offset}
	case int64(len(data)) != end-start || sha256.Sum256(data) != m.hashes[i]:
		return &BlockMismatch{Media: m.ID, Offset: start}
	}
	return nil
}

// marshal is the manifest's canonical encoding (§22):
//
//	{"v":1,"id":…,"size":…,"content_type":…,"duration":…,"block_size":…,"hashes":["…",…]}
//
// with "duration" omitted when 0.
func (m *Manifest) marshal() []byte {
	b := make([]byte, 0, 160+len(m.ID)*2+len(m.ContentType)*2+len(m.hashes)*47)
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, manifestVersion, 10)
	b = append(b, `,"id":`...)
	b = appendManifestString(b, m.ID)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, m.Size, 10)
	b = append(b, `,"content_type":`...)
	b = appendManifestString(b, m.ContentType)
	if m.Duration != 0 {
		b = append(b, `,"duration":`...)
		b = strconv.AppendFloat(b, m.Duration, 'f', -1, 64)
	}
	b = append(b, `,"block_size":`...)
	b = strconv.AppendInt(b, int64(m.BlockSize), 10)
	b = append(b, `,"hashes":[`...)
	for i, h := range m.hashes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '"')
	}
	return append(b, "]}"...)
}

// appendManifestString writes s as a JSON string: `"` and `\` escaped
// with a backslash, every other character as its UTF-8 bytes. (Media ids
// and content types hold no control character, so nothing else needs an
// escape.)
func appendManifestString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// manifestJSON is how a manifest decodes; parseManifest then requires
// that it re-encodes to the same bytes.
type manifestJSON struct {
	V           int      `json:"v"`
	ID          string   `json:"id"`
	Size        int64    `json:"size"`
	ContentType string   `json:"content_type"`
	Duration    float64  `json:"duration"`
	BlockSize   int      `json:"block_size"`
	Hashes      []string `json:"hashes"`
}

// parseManifest decodes a manifest strictly: §22's rules, and the bytes
// must be exactly the canonical encoding of what they decode to, so no
// unknown or duplicate member, other spelling or trailing data passes.
func parseManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("%w: a manifest of %d bytes (at most %d)", ErrManifest, len(b), maxManifestSize)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: the manifest is not UTF-8", ErrManifest)
	}
	var j manifestJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if j.V != manifestVersion {
		return nil, fmt.Errorf("%w: manifest version %d", ErrManifest, j.V)
	}
	if len(j.Hashes) > maxManifestBlocks {
		return nil, fmt.Errorf("%w: %d hashes (at most %d)", ErrManifest, len(j.Hashes), maxManifestBlocks)
	}
	m := &Manifest{ID: j.ID, Size: j.Size, ContentType: j.ContentType, Duration: j.Duration, BlockSize: j.BlockSize,
		hashes: make([][sha256.Size]byte, len(j.Hashes))}
	for i, h := range j.Hashes {
		raw, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%w: hash %d is not %d bytes of base64", ErrManifest, i, sha256.Size)
		}
		m.hashes[i] = [sha256.Size]byte(raw)
	}
	if err := m.checkFields(true); err != nil {
		return nil, err
	}
	if !bytes.Equal(m.marshal(), b) {
		return nil, fmt.Errorf("%w: not the canonical encoding (§22)", ErrManifest)
	}
	return m, nil
}
