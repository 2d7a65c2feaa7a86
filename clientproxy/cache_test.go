package clientproxy

import (
	"github.com/caddy-drm/caddy-drm/protocol"

	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func newTestCache(t *testing.T, src Source, capacity, prefetch int) *chunkCache {
	t.Helper()
	c := newChunkCache(src, capacity, prefetch, slog.New(slog.DiscardHandler))
	t.Cleanup(c.close)
	return c
}

func testMedium(id string, size int) medium {
	return medium{id: id, size: int64(size), chunkSize: testChunkSize}
}

func TestCacheGetReturnsChunks(t *testing.T) {
	const cs = testChunkSize
	for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 7} {
		src := newFakeSource(cs)
		want := src.add("m", "m", "audio/mpeg", size, 0)
		c := newTestCache(t, src, 64, 2)
		m := testMedium("m", size)
		var got []byte
		for i := range m.chunks() {
			b, err := c.get(t.Context(), m, i)
			if err != nil {
				t.Fatalf("size %d: chunk %d: %v", size, i, err)
			}
			got = append(got, b...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("size %d: chunks do not reassemble the medium", size)
		}
		if _, err := c.get(t.Context(), m, m.chunks()); err == nil {
			t.Errorf("size %d: reading past the last chunk succeeded", size)
		}
	}
}

func TestCachePrefetch(t *testing.T) {
	const cs = testChunkSize
	tests := []struct {
		name     string
		size     int
		read     int64
		prefetch int
		want     []int64 // chunks fetched, each exactly once
	}{
		{"ahead", 10 * cs, 0, 3, []int64{0, 1, 2, 3}},
		{"middle", 10 * cs, 4, 2, []int64{4, 5, 6}},
		{"stops at last chunk", 2 * cs, 0, 4, []int64{0, 1}},
		{"short last chunk", 3*cs + 7, 2, 4, []int64{2, 3}},
		{"reading last chunk", 3*cs + 7, 3, 4, []int64{3}},
		{"disabled", 10 * cs, 0, -1, []int64{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(cs)
			src.add("m", "m", "audio/mpeg", tc.size, 0)
			c := newTestCache(t, src, 64, tc.prefetch)
			if _, err := c.get(t.Context(), testMedium("m", tc.size), tc.read); err != nil {
				t.Fatal(err)
			}
			eventually(t, "prefetch", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return src.totalCalls() == len(tc.want) && len(c.inflight) == 0
			})
			for _, i := range tc.want {
				if n := src.callsFor("m", i); n != 1 {
					t.Errorf("chunk %d fetched %d times, want 1", i, n)
				}
			}
			src.mu.Lock()
			started := src.started
			src.mu.Unlock()
			if started != len(tc.want) {
				t.Errorf("%d fetches started, want %d", started, len(tc.want))
			}
		})
	}
}

func TestCachePrefetchBoundedPerMedium(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("m", "m", "audio/mpeg", 10*testChunkSize, 0)
	src.gate, src.gateFrom = make(chan struct{}), 1
	c := newTestCache(t, src, 64, 2)
	m := testMedium("m", 10*testChunkSize)

	if _, err := c.get(t.Context(), m, 0); err != nil {
		t.Fatal(err)
	}
	started := func() int { src.mu.Lock(); defer src.mu.Unlock(); return src.started }
	eventually(t, "two prefetches to start", func() bool { return started() == 3 })

	// Chunks 1 and 2 are in flight; asking for read-ahead from 1 would
	// want chunk 3 too, but the per-medium bound of 2 is reached. A fetch
	// is registered in the cache before prefetchAfter returns (the fake
	// counts it only once its goroutine runs), so check the registrations.
	c.prefetchAfter(m, 1)
	c.mu.Lock()
	var inflight []int64
	for k := range c.inflight {
		inflight = append(inflight, k.index)
	}
	prefetching := c.prefetching["m"]
	c.mu.Unlock()
	slices.Sort(inflight)
	if !slices.Equal(inflight, []int64{1, 2}) || prefetching != 2 {
		t.Errorf("chunks %v in flight, %d prefetches; want [1 2] and 2 (bound exceeded)", inflight, prefetching)
	}
	close(src.gate)
	eventually(t, "prefetches to finish", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.prefetching) == 0 && len(c.inflight) == 0
	})
	if src.callsFor("m", 1) != 1 || src.callsFor("m", 2) != 1 || src.callsFor("m", 3) != 0 {
		t.Errorf("calls for chunks 1..3 = %d %d %d, want 1 1 0",
			src.callsFor("m", 1), src.callsFor("m", 2), src.callsFor("m", 3))
	}
}

// waitCtx is a context that counts how many times its Done channel was
// asked for. chunkCache.get asks only once it has joined (or started) the
// fetch and is about to wait for it, so the count tells a test how many
// readers are waiting, with no sleep.
type waitCtx struct {
	context.Context
	waiting *atomic.Int32
}

func (c waitCtx) Done() <-chan struct{} {
	c.waiting.Add(1)
	return c.Context.Done()
}

func TestCacheSingleFlight(t *testing.T) {
	const readers = 16
	src := newFakeSource(testChunkSize)
	want := src.add("m", "m", "audio/mpeg", 10*testChunkSize, 0)
	src.gate = make(chan struct{}) // every fetch blocks until the gate opens
	c := newTestCache(t, src, 64, -1)
	m := testMedium("m", 10*testChunkSize)

	var waiting atomic.Int32
	ctx := waitCtx{t.Context(), &waiting}
	type result struct {
		data []byte
		err  error
	}
	results := make(chan result, readers)
	for range readers {
		go func() {
			b, err := c.get(ctx, m, 5)
			results <- result{b, err}
		}()
	}
	// Every reader is waiting and the gate is still closed, so all of
	// them have looked the chunk up while the first fetch was in flight.
	eventually(t, "every reader to wait for the chunk", func() bool { return waiting.Load() == readers })
	src.mu.Lock()
	started := src.started
	src.mu.Unlock()
	c.mu.Lock()
	inflight := len(c.inflight)
	c.mu.Unlock()
	if started != 1 || inflight != 1 {
		t.Errorf("%d readers waiting on %d fetches (%d in flight), want 1", readers, started, inflight)
	}
	close(src.gate)

	for i := range readers {
		r := receive(t, "a reader's result", results)
		if r.err != nil {
			t.Fatalf("reader %d: %v", i, r.err)
		}
		if !bytes.Equal(r.data, want[5*testChunkSize:6*testChunkSize]) {
			t.Fatalf("reader %d got wrong bytes", i)
		}
	}
	if n := src.callsFor("m", 5); n != 1 {
		t.Errorf("chunk fetched %d times by %d concurrent readers, want 1", n, readers)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("m", "m", "audio/mpeg", 10*testChunkSize, 0)
	c := newTestCache(t, src, 3, -1)
	m := testMedium("m", 10*testChunkSize)

	steps := []struct {
		read      int64
		wantCalls int     // Source calls for that chunk after the read
		cached    []int64 // cache contents afterwards, most recent first
	}{
		{0, 1, []int64{0}},
		{1, 1, []int64{1, 0}},
		{2, 1, []int64{2, 1, 0}},
		{0, 1, []int64{0, 2, 1}}, // hit refreshes 0
		{3, 1, []int64{3, 0, 2}}, // evicts 1, the least recently used
		{1, 2, []int64{1, 3, 0}}, // 1 was evicted: fetched again
		{0, 1, []int64{0, 1, 3}},
		{2, 2, []int64{2, 0, 1}},
	}
	for n, st := range steps {
		if _, err := c.get(t.Context(), m, st.read); err != nil {
			t.Fatalf("step %d: %v", n, err)
		}
		if got := src.callsFor("m", st.read); got != st.wantCalls {
			t.Errorf("step %d: chunk %d fetched %d times, want %d", n, st.read, got, st.wantCalls)
		}
		c.mu.Lock()
		var cached []int64
		for el := c.lru.Front(); el != nil; el = el.Next() {
			cached = append(cached, el.Value.(*cacheEntry).key.index)
		}
		entries := len(c.entries)
		c.mu.Unlock()
		if !slices.Equal(cached, st.cached) || entries != len(st.cached) {
			t.Errorf("step %d: cache holds %v (%d entries), want %v", n, cached, entries, st.cached)
		}
	}
}

func TestCacheDoesNotKeepFailures(t *testing.T) {
	const cs = testChunkSize
	tests := []struct {
		name    string
		m       medium // as the catalog describes it
		index   int64
		wantErr error  // the Source's error, wrapped
		wantMsg string // or the cache's own complaint
	}{
		// The fake's chunk 1 fails authentication.
		{"tampered", testMedium("m", 3*cs), 1, errTampered, ""},
		// The catalog claims 2500 bytes but the source has 2400: chunk 2
		// comes back short and must not be served.
		{"short chunk", testMedium("m", 2*cs+500), 2, nil, "source returned 400 bytes, want 500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(cs)
			src.add("m", "m", "audio/mpeg", 2*cs+400, 0)
			src.tamper("m", 1)
			c := newTestCache(t, src, 64, -1)
			for attempt := 1; attempt <= 2; attempt++ {
				b, err := c.get(t.Context(), tc.m, tc.index)
				if err == nil || b != nil {
					t.Fatalf("attempt %d: got %d bytes, err %v; want an error", attempt, len(b), err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("attempt %d: err = %v, want %v", attempt, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("attempt %d: err = %v, want it to say %q", attempt, err, tc.wantMsg)
				}
			}
			if n := src.callsFor("m", tc.index); n != 2 {
				t.Errorf("failing chunk fetched %d times in 2 reads, want 2 (failures cached?)", n)
			}
		})
	}
}

func TestCacheCanceledReaderDoesNotCancelFetch(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("m", "m", "audio/mpeg", 2*testChunkSize, 0)
	src.gate = make(chan struct{})
	c := newTestCache(t, src, 64, -1)
	m := testMedium("m", 2*testChunkSize)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.get(ctx, m, 0)
		errc <- err
	}()
	eventually(t, "the fetch to start", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return src.started == 1 })
	cancel()
	if err := receive(t, "the canceled reader to return", errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled reader: err = %v, want context.Canceled", err)
	}
	close(src.gate)
	eventually(t, "the fetch to be cached", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.entries[chunkKey{"m", testChunkSize, 0, protocol.PlayID{}}]
		return ok
	})
	if _, err := c.get(t.Context(), m, 0); err != nil {
		t.Fatal(err)
	}
	if n := src.callsFor("m", 0); n != 1 {
		t.Errorf("chunk fetched %d times, want 1", n)
	}
}

func TestCacheCloseStopsPrefetch(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("m", "m", "audio/mpeg", 10*testChunkSize, 0)
	src.gate, src.gateFrom = make(chan struct{}), 1 // prefetches hang until canceled
	defer close(src.gate)
	c := newChunkCache(src, 64, 4, slog.New(slog.DiscardHandler))
	m := testMedium("m", 10*testChunkSize)

	if _, err := c.get(t.Context(), m, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "prefetches to start", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return src.started == 5 })

	closed := make(chan struct{})
	go func() {
		c.close()
		close(closed)
	}()
	receive(t, "close to stop the prefetches", closed)
	c.close() // idempotent

	if n := src.totalCalls(); n != 1 {
		t.Errorf("%d chunks completed, want only chunk 0", n)
	}
	if _, err := c.get(t.Context(), m, 5); !errors.Is(err, errClosed) {
		t.Errorf("get after close: err = %v, want errClosed", err)
	}
}
