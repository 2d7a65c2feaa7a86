package clientproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// mediaReader is the io.ReadSeeker that http.ServeContent reads a medium
// through. It only ever hands out bytes of chunks the cache returned
// without error, i.e. verified plaintext, and it remembers the first
// failure so the handler can tell a cut-off body from a finished one
// (ServeContent itself discards copy errors).
type mediaReader struct {
	ctx   context.Context
	cache *chunkCache
	m     medium
	off   int64
	// served counts the bytes given to the player, for the play's bound;
	// atomic: see mu.
	served atomic.Int64

	// mu guards err: for multi-range responses ServeContent reads from a
	// goroutine that may still be running when it returns.
	mu  sync.Mutex
	err error
}

func newMediaReader(ctx context.Context, cache *chunkCache, m medium) *mediaReader {
	return &mediaReader{ctx: ctx, cache: cache, m: m}
}

// Read copies from the chunk holding the current offset; it never spans
// two chunks, which keeps each fetch visible as its own failure point.
func (r *mediaReader) Read(p []byte) (int, error) {
	if r.off >= r.m.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	index := r.off / r.m.chunkSize
	data, err := r.cache.get(r.ctx, r.m, index)
	if err != nil {
		r.fail(err)
		return 0, err
	}
	n := copy(p, data[r.off-index*r.m.chunkSize:])
	r.off += int64(n)
	r.served.Add(int64(n))
	return n, nil
}

// Seek only moves the offset; chunks are fetched lazily by Read.
func (r *mediaReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.m.size + offset
	default:
		return 0, errors.New("clientproxy: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("clientproxy: negative position")
	}
	r.off = abs
	return abs, nil
}

// prime fetches the chunk holding offset off ahead of ServeContent so that
// a failure there can still become a clean 502 instead of a cut-off 2xx.
func (r *mediaReader) prime(off int64) error {
	_, err := r.cache.get(r.ctx, r.m, off/r.m.chunkSize)
	return err
}

func (r *mediaReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// failure reports the first read error, if any.
func (r *mediaReader) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// firstServedOffset predicts the offset of the first body byte that
// http.ServeContent will send for r, mirroring its Range handling for a
// response without validators (no ETag or Last-Modified, so any If-Range
// makes it ignore Range). ok is false when no body byte will be read at
// all: HEAD, an empty medium, or a Range ServeContent rejects with 416.
// A wrong guess is harmless: the failure then surfaces as an aborted
// response instead of a 502, and still no unverified byte is sent.
func firstServedOffset(r *http.Request, size int64) (off int64, ok bool) {
	if r.Method == http.MethodHead || size <= 0 {
		return 0, false
	}
	spec := r.Header.Get("Range")
	if spec == "" || r.Header.Get("If-Range") != "" {
		return 0, true
	}
	starts, total, err := parseRangeStarts(spec, size)
	if err != nil || len(starts) == 0 {
		return 0, false
	}
	if total > size {
		return 0, true // ServeContent ignores such a Range and sends it all
	}
	if starts[0] >= size {
		return 0, false // a zero-length suffix range: nothing is read
	}
	return starts[0], true
}

// parseRangeStarts returns the start of every satisfiable range of a
// "bytes=" Range header, in order, and the sum of their lengths, with the
// same rules as net/http's (unexported) parser.
func parseRangeStarts(spec string, size int64) (starts []int64, total int64, err error) {
	const prefix = "bytes="
	rest, found := strings.CutPrefix(spec, prefix)
	if !found {
		return nil, 0, errors.New("invalid range unit")
	}
	for ra := range strings.SplitSeq(rest, ",") {
		ra = textproto.TrimString(ra)
		if ra == "" {
			continue
		}
		first, last, ok := strings.Cut(ra, "-")
		if !ok {
			return nil, 0, fmt.Errorf("invalid range %q", ra)
		}
		first, last = textproto.TrimString(first), textproto.TrimString(last)
		if first == "" {
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 || strings.HasPrefix(last, "-") {
				return nil, 0, fmt.Errorf("invalid suffix range %q", ra)
			}
			n = min(n, size)
			starts, total = append(starts, size-n), total+n
			continue
		}
		start, err := strconv.ParseInt(first, 10, 64)
		if err != nil || start < 0 {
			return nil, 0, fmt.Errorf("invalid range start %q", ra)
		}
		if start >= size {
			continue // unsatisfiable, skipped like ServeContent does
		}
		end := size - 1
		if last != "" {
			e, err := strconv.ParseInt(last, 10, 64)
			if err != nil || e < start {
				return nil, 0, fmt.Errorf("invalid range end %q", ra)
			}
			end = min(e, size-1)
		}
		starts, total = append(starts, start), total+end-start+1
	}
	return starts, total, nil
}
