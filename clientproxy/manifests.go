package clientproxy

import (
	"container/list"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Publisher-signed manifests (protocol §22): with ClientOptions.
// VerifyManifest set, every medium must come with a manifest signed by a
// publisher of the content CA, and every byte is checked against it
// before it is returned: the blocks covering a chunk are fetched whole
// (neighbouring chunks, at any chunk size), hashed, and kept verified.
// A medium without a manifest is refused: a server cannot turn the check
// off by leaving the manifest out.

const (
	manifestTTL          = 5 * time.Minute // a medium re-published meanwhile is seen
	defaultVerifiedBytes = 32 << 20        // verified blocks kept in memory
)

type manifests struct {
	verify func(chain [][]byte) (*x509.Certificate, error)
	// flight makes the reads that need the same manifest or the same
	// blocks at once (the player's and the read-ahead's) fetch them once.
	flight singleflight.Group

	mu      sync.Mutex
	byID    map[string]manifestEntry
	blocks  *list.List // of *verifiedBlock, most recent first
	index   map[blockKey]*list.Element
	bytes   int64
	maxSize int64
}

type manifestEntry struct {
	m       *protocol.Manifest
	fetched time.Time
}

// blockKey names a verified block. The play is part of it, like the chunk
// cache's: a new play is fetched from the server, which counts it. So is
// the manifest that verified it: a medium re-signed (another block size,
// say) starts afresh, never mixing blocks two manifests vouch for.
type blockKey struct {
	m     *protocol.Manifest
	id    string
	play  protocol.PlayID
	index int64
}

type verifiedBlock struct {
	key  blockKey
	data []byte
}

func newManifests(verify func(chain [][]byte) (*x509.Certificate, error)) *manifests {
	return &manifests{verify: verify, byID: map[string]manifestEntry{}, blocks: list.New(), index: map[blockKey]*list.Element{}, maxSize: defaultVerifiedBytes}
}

func (ms *manifests) block(k blockKey) ([]byte, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	el, ok := ms.index[k]
	if !ok {
		return nil, false
	}
	ms.blocks.MoveToFront(el)
	return el.Value.(*verifiedBlock).data, true
}

func (ms *manifests) keep(k blockKey, data []byte) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if _, ok := ms.index[k]; ok {
		return
	}
	ms.index[k] = ms.blocks.PushFront(&verifiedBlock{k, data})
	ms.bytes += int64(len(data))
	for ms.bytes > ms.maxSize && ms.blocks.Len() > 1 {
		old := ms.blocks.Remove(ms.blocks.Back()).(*verifiedBlock)
		delete(ms.index, old.key)
		ms.bytes -= int64(len(old.data))
	}
}

// manifest returns the verified manifest of media id, fetching it (sealed,
// over the protocol) when it has none younger than manifestTTL.
func (c *Client) manifest(ctx context.Context, id string) (*protocol.Manifest, error) {
	ms := c.manifests
	cached := func() (*protocol.Manifest, bool) {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		e, ok := ms.byID[id]
		return e.m, ok && c.now().Sub(e.fetched) < manifestTTL
	}
	if m, ok := cached(); ok {
		return m, nil
	}
	ch := ms.flight.DoChan("manifest\x00"+id, func() (any, error) {
		if m, ok := cached(); ok {
			return m, nil // fetched by another read meanwhile
		}
		return c.fetchManifest(context.WithoutCancel(ctx), id)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*protocol.Manifest), nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// fetchManifest fetches, verifies and keeps the manifest of media id.
func (c *Client) fetchManifest(ctx context.Context, id string) (*protocol.Manifest, error) {
	ms := c.manifests
	var signed []byte
	_, err := c.do(ctx, fmt.Sprintf("manifest of %q", id), func(s *protocol.ClientSession) *protocol.Request {
		return s.NewManifestRequest(id)
	}, func(req *protocol.Request, body []byte) error {
		var err error
		signed, err = req.OpenManifest(body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%q has no manifest the server would give (--content-ca requires one): %w", id, err)
	}
	m, err := protocol.OpenManifest(signed, ms.verify)
	if err != nil {
		return nil, fmt.Errorf("the manifest of %q: %w", id, err)
	}
	c.mu.Lock()
	size, known := c.sizes[id]
	c.mu.Unlock()
	if m.ID != id || known && m.Size != size {
		return nil, fmt.Errorf("%w: the manifest served for %q describes %q of %d bytes", protocol.ErrManifest, id, m.ID, m.Size)
	}
	c.logger.Info("manifest verified", "id", id, "publisher", m.Publisher.Subject.String(), "size", m.Size, "block_size", m.BlockSize)
	ms.mu.Lock()
	ms.byID[id] = manifestEntry{m, c.now()}
	ms.mu.Unlock()
	return m, nil
}

// readVerified returns chunk index of media id as part of play, every byte
// checked against the medium's manifest. Blocks it has verified before (in
// this play) are not fetched again; the others are fetched whole, chunk by
// chunk, and checked before any byte of them is returned.
func (c *Client) readVerified(ctx context.Context, play protocol.PlayID, id string, index int64) ([]byte, error) {
	m, err := c.manifest(ctx, id)
	if err != nil {
		return nil, err
	}
	cs, err := c.ChunkSize(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	size, known := c.sizes[id]
	c.mu.Unlock()
	if known && size != m.Size {
		// The catalog changed since the manifest was verified (a medium
		// cut short, say): what the player is told must be what the
		// publisher signed.
		return nil, fmt.Errorf("%w: %q is %d bytes in the catalog, %d in its manifest", protocol.ErrManifestMismatch, id, size, m.Size)
	}
	start, end, ok := protocol.ChunkSpan(uint64(index), uint64(m.Size), cs)
	if !ok {
		return nil, fmt.Errorf("%w: chunk %d lies past the end of %q (%d bytes, from its manifest)", protocol.ErrOutOfRange, index, id, m.Size)
	}
	first, last := m.Blocks(int64(start), int64(end))
	blocks := make([][]byte, 0, last-first+1)
	missing := false
	for b := first; b <= last; b++ {
		data, ok := c.manifests.block(blockKey{m, id, play, b})
		missing = missing || !ok
		blocks = append(blocks, data)
	}
	if missing {
		key := fmt.Sprintf("blocks\x00%p\x00%s\x00%s\x00%d\x00%d", m, id, play, first, last)
		ch := c.manifests.flight.DoChan(key, func() (any, error) {
			return c.fetchBlocks(context.WithoutCancel(ctx), play, id, m, first, last, cs)
		})
		select {
		case res := <-ch:
			if res.Err != nil {
				return nil, res.Err
			}
			blocks = res.Val.([][]byte)
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	out := make([]byte, 0, end-start)
	for i, data := range blocks {
		bs, be, _ := m.BlockSpan(first + int64(i))
		if int64(len(data)) != be-bs {
			return nil, fmt.Errorf("%w: block %d of %q has %d bytes, its manifest %d", protocol.ErrManifestMismatch, first+int64(i), id, len(data), be-bs)
		}
		lo, hi := max(bs, int64(start)), min(bs+int64(len(data)), int64(end))
		out = append(out, data[lo-bs:hi-bs]...)
	}
	return out, nil
}

// fetchBlocks reads blocks first … last of id through the chunks that
// cover them, checks each against the manifest and keeps them.
func (c *Client) fetchBlocks(ctx context.Context, play protocol.PlayID, id string, m *protocol.Manifest, first, last int64, cs int) ([][]byte, error) {
	from, _, _ := m.BlockSpan(first)
	_, to, _ := m.BlockSpan(last)
	raw := make([]byte, 0, to-from)
	for ci := from / int64(cs); ci*int64(cs) < to || ci == 0 && to == 0; ci++ {
		data, err := c.readChunk(ctx, play, id, ci, m.Size)
		if err != nil {
			return nil, err
		}
		cstart := ci * int64(cs)
		lo, hi := max(from, cstart), min(to, cstart+int64(len(data)))
		if hi < lo {
			return nil, fmt.Errorf("%w: chunk %d of %q ends before the manifest's block %d", protocol.ErrManifestMismatch, ci, id, last)
		}
		raw = append(raw, data[lo-cstart:hi-cstart]...)
		if to == 0 {
			break
		}
	}
	blocks := make([][]byte, 0, last-first+1)
	for b := first; b <= last; b++ {
		bs, be, _ := m.BlockSpan(b)
		data := raw[bs-from : min(be-from, int64(len(raw)))]
		if err := m.CheckBlock(b, data); err != nil {
			offset := bs
			if mm, ok := errors.AsType[*protocol.BlockMismatch](err); ok {
				offset = mm.Offset
			}
			c.logger.Error("block refused: it does not match the publisher's manifest", "id", id, "offset", offset, "block", b, "err", err)
			return nil, err
		}
		c.manifests.keep(blockKey{m, id, play, b}, data)
		blocks = append(blocks, data)
	}
	return blocks, nil
}
