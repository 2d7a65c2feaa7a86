package clientproxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// testChunkSize is small so that tests cross chunk boundaries cheaply.
const testChunkSize = 1000

var errTampered = errors.New("chunk failed authentication")

// fakeKey names a chunk of the fake source.
type fakeKey struct {
	id    string
	index int64
}

// fakeSource is an in-memory Source. It counts ReadChunk calls per chunk,
// can mark chunks as tampered (they fail), and can hold reads of chunks
// at or after gateFrom until gate is closed or the fetch is canceled.
type fakeSource struct {
	cs int

	mu           sync.Mutex
	items        []protocol.MediaInfo
	data         map[string][]byte
	tampered     map[fakeKey]bool
	calls        map[fakeKey]int
	started      int // ReadChunk calls begun
	catalogCalls int

	gate     chan struct{}
	gateFrom int64
}

func newFakeSource(cs int) *fakeSource {
	return &fakeSource{
		cs:       cs,
		data:     make(map[string][]byte),
		tampered: make(map[fakeKey]bool),
		calls:    make(map[fakeKey]int),
	}
}

// add publishes a medium of size random bytes and returns its content.
func (f *fakeSource) add(id, title, ctype string, size int, dur float64) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, protocol.MediaInfo{ID: id, Title: title, Size: int64(size), ContentType: ctype, Duration: dur})
	f.data[id] = b
	return b
}

func (f *fakeSource) tamper(id string, index int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tampered[fakeKey{id, index}] = true
}

func (f *fakeSource) callsFor(id string, index int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[fakeKey{id, index}]
}

func (f *fakeSource) totalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeSource) Catalog(context.Context) ([]protocol.MediaInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.catalogCalls++
	return append([]protocol.MediaInfo(nil), f.items...), nil
}

func (f *fakeSource) ChunkSize(context.Context) (int, error) { return f.cs, nil }

func (f *fakeSource) ReadChunk(ctx context.Context, id string, index int64) ([]byte, error) {
	f.mu.Lock()
	f.started++
	gate := f.gate
	if index < f.gateFrom {
		gate = nil
	}
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	key := fakeKey{id, index}
	f.calls[key]++
	b, ok := f.data[id]
	if !ok {
		return nil, fmt.Errorf("no media %q", id)
	}
	start, end, ok := protocol.ChunkSpan(uint64(index), uint64(len(b)), f.cs)
	if index < 0 || !ok {
		return nil, fmt.Errorf("chunk %d of %q out of range", index, id)
	}
	if f.tampered[key] {
		return nil, errTampered
	}
	return append([]byte(nil), b[start:end]...), nil
}

// testDeadline bounds every wait of a test for other goroutines: generous,
// so a slow machine does not make tests flaky, and finite, so a bug fails
// the test instead of hanging it.
const testDeadline = 10 * time.Second

// eventually polls cond until it holds or testDeadline passes, so that
// tests of background work neither sleep blindly nor flake.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// receive returns the next value from ch, or fails the test if none
// arrives within testDeadline.
func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testDeadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
