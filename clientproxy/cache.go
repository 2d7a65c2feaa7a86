package clientproxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// errClosed is returned for reads after Server.Close: the fetch machinery
// has stopped and will not start new work.
var errClosed = errors.New("clientproxy: server closed")

// medium is what the cache must know about one media item to fetch and
// check its chunks: how many there are and how long each must be.
type medium struct {
	id        string
	size      int64
	chunkSize int64
	play      protocol.PlayID // the play the reads belong to (zero: none)
}

// chunks is the number of chunks of m (protocol.ChunkCount).
func (m medium) chunks() int64 {
	return int64(protocol.ChunkCount(uint64(m.size), int(m.chunkSize)))
}

// chunkLen is the plaintext length chunk index must have (protocol.ChunkSpan).
func (m medium) chunkLen(index int64) int64 {
	start, end, _ := protocol.ChunkSpan(uint64(index), uint64(m.size), int(m.chunkSize))
	return int64(end - start)
}

// chunkKey names a cached chunk. The chunk size is part of it: a server
// reconfigured with another one starts new chunks, not wrong ones. So is
// the play: a new play of a medium is fetched from the server, which
// counts it as a view (protocol §21), not replayed from the cache.
type chunkKey struct {
	id        string
	chunkSize int64
	index     int64
	play      protocol.PlayID
}

type cacheEntry struct {
	key  chunkKey
	data []byte
}

// call is one in-progress Source.ReadChunk shared by every reader that
// wants the same chunk meanwhile (single-flight). data and err are
// written once, before done is closed.
type call struct {
	done chan struct{}
	data []byte
	err  error
}

// chunkCache holds recently used verified chunks in an LRU and fetches
// missing ones from the Source, at most once at a time per chunk.
//
// Fetches run on the cache's own context, not the player's request
// context: a player often hangs up (seeks, closes the tab) while a chunk is
// still in flight, and the chunk is still worth keeping; other readers may
// also be waiting on the same fetch. Close cancels that context and waits
// for every fetch goroutine, so nothing outlives the Server.
type chunkCache struct {
	src      Source
	capacity int
	prefetch int
	logger   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	lru         *list.List // of *cacheEntry, most recently used first
	entries     map[chunkKey]*list.Element
	inflight    map[chunkKey]*call
	prefetching map[string]int // background fetches in flight per media id
}

// newChunkCache returns a cache of capacity chunks (at least one) that
// reads ahead prefetch chunks (none if prefetch <= 0).
func newChunkCache(src Source, capacity, prefetch int, logger *slog.Logger) *chunkCache {
	ctx, cancel := context.WithCancel(context.Background())
	return &chunkCache{
		src:         src,
		capacity:    max(capacity, 1),
		prefetch:    max(prefetch, 0),
		logger:      logger,
		ctx:         ctx,
		cancel:      cancel,
		lru:         list.New(),
		entries:     make(map[chunkKey]*list.Element),
		inflight:    make(map[chunkKey]*call),
		prefetching: make(map[string]int),
	}
}

// get returns the verified plaintext of chunk index of m, from the cache
// or from the Source, and schedules read-ahead of the chunks after it.
// The returned slice is shared and must not be modified. ctx bounds only
// the caller's wait, not the fetch itself.
func (c *chunkCache) get(ctx context.Context, m medium, index int64) ([]byte, error) {
	if index < 0 || index >= m.chunks() {
		return nil, fmt.Errorf("chunk %d of %q: out of range (%d chunks)", index, m.id, m.chunks())
	}
	key := chunkKey{m.id, m.chunkSize, index, m.play}

	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		data := el.Value.(*cacheEntry).data
		c.mu.Unlock()
		c.prefetchAfter(m, index)
		return data, nil
	}
	cl, ok := c.inflight[key]
	if !ok {
		var err error
		if cl, err = c.startLocked(m, index, false); err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
	c.mu.Unlock()
	c.prefetchAfter(m, index)

	select {
	case <-cl.done:
		return cl.data, cl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("chunk %d of %q: %w", index, m.id, context.Cause(ctx))
	}
}

// prefetchAfter starts background fetches of the chunks following index so
// that they are cached by the time the player gets there. It keeps at most
// c.prefetch of them in flight per medium so that a fast seeker cannot
// pile up unbounded work against the origin, and never goes past the last
// chunk.
func (c *chunkCache) prefetchAfter(m medium, index int64) {
	last := min(index+int64(c.prefetch), m.chunks()-1)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := index + 1; i <= last; i++ {
		if c.prefetching[m.id] >= c.prefetch {
			return
		}
		key := chunkKey{m.id, m.chunkSize, i, m.play}
		if _, ok := c.entries[key]; ok {
			continue
		}
		if _, ok := c.inflight[key]; ok {
			continue
		}
		if _, err := c.startLocked(m, i, true); err != nil {
			return // closed
		}
	}
}

// startLocked registers and launches the fetch of chunk index of m. It
// refuses once the cache is closed, which also keeps wg.Add from racing
// with the wg.Wait in close. c.mu must be held.
func (c *chunkCache) startLocked(m medium, index int64, background bool) (*call, error) {
	if c.closed {
		return nil, errClosed
	}
	key := chunkKey{m.id, m.chunkSize, index, m.play}
	cl := &call{done: make(chan struct{})}
	c.inflight[key] = cl
	if background {
		c.prefetching[m.id]++
	}
	c.wg.Add(1)
	go c.fetch(m, index, cl, background)
	return cl, nil
}

// fetch reads one chunk from the Source, checks its length, and caches it
// only on success so that a failed or tampered chunk is retried (and fails
// again) instead of being served later.
func (c *chunkCache) fetch(m medium, index int64, cl *call, background bool) {
	defer c.wg.Done()
	data, err := c.src.ReadChunk(c.ctx, m.id, index)
	if err == nil && int64(len(data)) != m.chunkLen(index) {
		err = fmt.Errorf("source returned %d bytes, want %d", len(data), m.chunkLen(index))
	}
	if err != nil {
		err = fmt.Errorf("chunk %d of %q: %w", index, m.id, err)
		data = nil
	}
	if err != nil && background {
		// A failed read-ahead is retried when the player gets there, but a
		// chunk failing authentication is worth seeing even if it never
		// does; cancellation by Close is routine.
		level := slog.LevelWarn
		if c.ctx.Err() != nil {
			level = slog.LevelDebug
		}
		c.logger.Log(c.ctx, level, "prefetch failed", "id", m.id, "chunk", index, "err", err)
	}

	key := chunkKey{m.id, m.chunkSize, index, m.play}
	c.mu.Lock()
	delete(c.inflight, key)
	if background {
		if c.prefetching[m.id]--; c.prefetching[m.id] == 0 {
			delete(c.prefetching, m.id)
		}
	}
	if err == nil {
		c.addLocked(key, data)
	}
	c.mu.Unlock()

	cl.data, cl.err = data, err
	close(cl.done)
}

// addLocked inserts a chunk as most recently used and evicts the least
// recently used ones beyond capacity. The key is never already present: a
// fetch starts only for a chunk that is neither cached nor in flight, under
// the same lock. c.mu must be held.
func (c *chunkCache) addLocked(key chunkKey, data []byte) {
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, data: data})
	for c.lru.Len() > c.capacity {
		el := c.lru.Back()
		c.lru.Remove(el)
		delete(c.entries, el.Value.(*cacheEntry).key)
	}
}

// close stops new fetches, cancels the ones in flight and waits for their
// goroutines to finish. It is safe to call more than once.
func (c *chunkCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}
