package clientproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// syncBuffer lets the test read log output that server goroutines write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer serves src over a real HTTP listener, so that aborted
// responses look to the client exactly as they would to a player.
func startServer(t *testing.T, src Source, opts ServerOptions) (*Server, *httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := NewServer(src, opts, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() { s.Close() })
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts, logs
}

// fetch performs one request that must get a response and reads the
// whole body; readErr is the error the body read ended with (nil for a
// complete body).
func fetch(t *testing.T, ts *httptest.Server, method, path string, hdr map[string]string) (resp *http.Response, body []byte, readErr error) {
	t.Helper()
	resp, body, err := fetchRaw(t, ts, method, path, hdr)
	if resp == nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, body, err
}

// fetchRaw is fetch for requests that may be aborted before the response
// header arrives; resp is then nil and err says why. A server that does
// not finish its answer within testDeadline fails the test: a hang must
// not pass for the aborted response some tests expect.
func fetchRaw(t *testing.T, ts *httptest.Server, method, path string, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		switch {
		case v == "":
		case k == "Host":
			req.Host = v
		default:
			req.Header.Set(k, v)
		}
	}
	resp, body, err := roundTrip(ts.Client(), req)
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no complete answer within %v (%v)", method, path, testDeadline, err)
	}
	return resp, body, err
}

// roundTrip sends req and reads the whole response body.
func roundTrip(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestMediaFullBody(t *testing.T) {
	const cs = testChunkSize
	for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 7} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			src := newFakeSource(cs)
			want := src.add("m.mp3", "M", "audio/mpeg", size, 0)
			_, ts, _ := startServer(t, src, ServerOptions{})
			resp, body, err := fetch(t, ts, "GET", "/media/m.mp3", nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("body (%d bytes) differs from the medium (%d bytes)", len(body), len(want))
			}
			for k, v := range map[string]string{
				"Content-Length": strconv.Itoa(size),
				"Content-Type":   "audio/mpeg",
				"Accept-Ranges":  "bytes",
			} {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestMediaRanges(t *testing.T) {
	const size = 3*testChunkSize + 7
	tests := []struct {
		name       string
		hdr        map[string]string
		wantStatus int
		first      int // inclusive byte range of the body, for 200/206
		last       int
	}{
		{"first byte", map[string]string{"Range": "bytes=0-0"}, 206, 0, 0},
		{"open end", map[string]string{"Range": "bytes=5-"}, 206, 5, size - 1},
		{"suffix", map[string]string{"Range": "bytes=-10"}, 206, size - 10, size - 1},
		{"suffix longer than medium", map[string]string{"Range": "bytes=-99999"}, 206, 0, size - 1},
		{"across chunk boundaries", map[string]string{"Range": "bytes=990-2010"}, 206, 990, 2010},
		{"within the short last chunk", map[string]string{"Range": "bytes=3001-3005"}, 206, 3001, 3005},
		{"last byte", map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", size-1, size-1)}, 206, size - 1, size - 1},
		{"end clamped", map[string]string{"Range": "bytes=2999-100000"}, 206, 2999, size - 1},
		{"at end", map[string]string{"Range": fmt.Sprintf("bytes=%d-", size)}, 416, 0, 0},
		{"past end", map[string]string{"Range": "bytes=5000-6000"}, 416, 0, 0},
		{"malformed", map[string]string{"Range": "bytes=9-3"}, 416, 0, 0},
		{"If-Range mismatch sends all", map[string]string{"Range": "bytes=5-", "If-Range": `"stale"`}, 200, 0, size - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(testChunkSize)
			data := src.add("m", "M", "audio/flac", size, 0)
			_, ts, _ := startServer(t, src, ServerOptions{})
			resp, body, err := fetch(t, ts, "GET", "/media/m", tc.hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			switch tc.wantStatus {
			case 416:
				if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes */%d", size); tc.name != "malformed" && got != want {
					t.Errorf("Content-Range = %q, want %q", got, want)
				}
				return
			case 206:
				want := fmt.Sprintf("bytes %d-%d/%d", tc.first, tc.last, size)
				if got := resp.Header.Get("Content-Range"); got != want {
					t.Errorf("Content-Range = %q, want %q", got, want)
				}
			}
			if !bytes.Equal(body, data[tc.first:tc.last+1]) {
				t.Errorf("body is not bytes %d-%d", tc.first, tc.last)
			}
			if got, want := resp.Header.Get("Content-Length"), strconv.Itoa(tc.last-tc.first+1); got != want {
				t.Errorf("Content-Length = %s, want %s", got, want)
			}
			if got := resp.Header.Get("Content-Type"); got != "audio/flac" {
				t.Errorf("Content-Type = %q, want audio/flac", got)
			}
		})
	}
}

func TestMediaMultiRange(t *testing.T) {
	src := newFakeSource(testChunkSize)
	data := src.add("m", "M", "audio/ogg", 3*testChunkSize+7, 0)
	_, ts, _ := startServer(t, src, ServerOptions{})
	resp, body, err := fetch(t, ts, "GET", "/media/m", map[string]string{"Range": "bytes=0-9,1995-2004"})
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 206 || err != nil || mt != "multipart/byteranges" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for _, want := range [][]byte{data[0:10], data[1995:2005]} {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(part)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("part %q: wrong bytes (err %v)", part.Header.Get("Content-Range"), err)
		}
	}
}

func TestMediaHead(t *testing.T) {
	const size = 3*testChunkSize + 7
	tests := []struct {
		rangeHdr   string
		wantStatus int
		wantLen    string
	}{
		{"", 200, strconv.Itoa(size)},
		{"bytes=10-19", 206, "10"},
	}
	for _, tc := range tests {
		src := newFakeSource(testChunkSize)
		src.add("m", "M", "video/mp4", size, 0)
		_, ts, _ := startServer(t, src, ServerOptions{})
		resp, body, err := fetch(t, ts, "HEAD", "/media/m", map[string]string{"Range": tc.rangeHdr})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.wantStatus || resp.Header.Get("Content-Length") != tc.wantLen || len(body) != 0 {
			t.Errorf("HEAD %q: status %d, Content-Length %q, %d body bytes; want %d, %s, 0",
				tc.rangeHdr, resp.StatusCode, resp.Header.Get("Content-Length"), len(body), tc.wantStatus, tc.wantLen)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "video/mp4" {
			t.Errorf("HEAD: Content-Type %q, want video/mp4", ct)
		}
		if n := src.totalCalls(); n != 0 {
			t.Errorf("HEAD fetched %d chunks, want none", n)
		}
	}
}

func TestRouting(t *testing.T) {
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/media/missing", 404, ""},
		{"GET", "/media/", 404, ""},
		{"GET", "/nope", 404, ""},
		{"GET", "/playlist.m3u/x", 404, ""},
		{"POST", "/media/m", 405, ""},
		{"DELETE", "/", 405, ""},
		{"PUT", "/nope", 405, ""},
	}
	src := newFakeSource(testChunkSize)
	src.add("m", "M", "audio/mpeg", 10, 0)
	_, ts, _ := startServer(t, src, ServerOptions{})
	for _, tc := range tests {
		resp, body, err := fetch(t, ts, tc.method, tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.wantStatus || (tc.wantBody != "" && string(body) != tc.wantBody) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
		}
		if tc.wantStatus == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
}

func TestTamperedChunk(t *testing.T) {
	const cs = testChunkSize
	const bad = 2 // the chunk that fails authentication
	// How the player learns of the failure.
	const (
		badGateway = iota // failure in the first chunk sent: clean 502
		cut               // header already sent: body ends in an error
		aborted           // cut, or the header was still buffered: no response
	)
	tests := []struct {
		name      string
		rangeHdr  string
		wantStart int // offset of the first body byte
		want      int
	}{
		{"range starts in tampered chunk", fmt.Sprintf("bytes=%d-", bad*cs+10), 0, badGateway},
		{"range is the tampered chunk", fmt.Sprintf("bytes=%d-%d", bad*cs, bad*cs+cs-1), 0, badGateway},
		// More than net/http's 512-byte first write is verified, so the
		// header goes out before the failure.
		{"full body", "", 0, cut},
		{"range starts earlier", "bytes=500-", 500, cut},
		{"range ends in tampered chunk", fmt.Sprintf("bytes=%d-%d", cs+500, bad*cs+500), cs + 500, aborted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(cs)
			data := src.add("m", "M", "audio/mpeg", 5*cs, 0)
			src.tamper("m", bad)
			_, ts, logs := startServer(t, src, ServerOptions{})
			resp, body, err := fetchRaw(t, ts, "GET", "/media/m", map[string]string{"Range": tc.rangeHdr})

			if tc.want == badGateway {
				if resp == nil {
					t.Fatalf("no response: %v", err)
				}
				if err != nil {
					t.Fatalf("reading the 502: %v", err)
				}
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d, want 502", resp.StatusCode)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q, want text/plain", ct)
				}
				if resp.Header.Get("Content-Range") != "" || !strings.Contains(string(body), errTampered.Error()) {
					t.Errorf("502 carries Content-Range %q, body %q", resp.Header.Get("Content-Range"), body)
				}
				if bytes.Contains(body, data[bad*cs+10:bad*cs+20]) {
					t.Error("502 body contains media bytes")
				}
			} else {
				if err == nil {
					t.Fatalf("body read ended cleanly after %d bytes (status %d); want an error", len(body), resp.StatusCode)
				}
				if resp == nil && tc.want == cut {
					t.Fatalf("no response (%v); want a cut-off 2xx", err)
				}
				if resp != nil && resp.StatusCode != 200 && resp.StatusCode != 206 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				if end := tc.wantStart + len(body); end > bad*cs {
					t.Fatalf("received bytes up to %d, past the verified prefix ending at %d", end, bad*cs)
				}
				if !bytes.Equal(body, data[tc.wantStart:tc.wantStart+len(body)]) {
					t.Error("received bytes differ from the medium")
				}
			}
			if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, errTampered.Error()) {
				t.Errorf("failure not logged with its reason; logs:\n%s", l)
			}
		})
	}
}

func TestTamperedChunkMultiRangeAborts(t *testing.T) {
	const cs = testChunkSize
	src := newFakeSource(cs)
	data := src.add("m", "M", "audio/mpeg", 5*cs, 0)
	src.tamper("m", 2)
	_, ts, _ := startServer(t, src, ServerOptions{})
	_, body, err := fetchRaw(t, ts, "GET", "/media/m", map[string]string{"Range": "bytes=0-9,2100-2199"})
	if err == nil {
		t.Fatal("multi-range response ended cleanly; want an error")
	}
	if bytes.Contains(body, data[2100:2120]) {
		t.Error("unverified bytes were sent")
	}
}

func TestServerPrefetchesAhead(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("m", "M", "audio/mpeg", 20*testChunkSize, 0)
	_, ts, _ := startServer(t, src, ServerOptions{Prefetch: 3})
	if _, _, err := fetch(t, ts, "GET", "/media/m", map[string]string{"Range": "bytes=0-0"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "chunks 1..3 to be prefetched", func() bool {
		return src.callsFor("m", 1) == 1 && src.callsFor("m", 2) == 1 && src.callsFor("m", 3) == 1
	})
	// Reading a prefetched chunk is served from the cache.
	if _, _, err := fetch(t, ts, "GET", "/media/m", map[string]string{"Range": "bytes=2000-2999"}); err != nil {
		t.Fatal(err)
	}
	if n := src.callsFor("m", 2); n != 1 {
		t.Errorf("prefetched chunk fetched %d times, want 1", n)
	}
}

func TestServerClose(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("m", "M", "audio/mpeg", 10*testChunkSize, 0)
	s, ts, _ := startServer(t, src, ServerOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	resp, _, err := fetch(t, ts, "GET", "/media/m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("after Close: status %d, want 502", resp.StatusCode)
	}
}

// TestMidResponseFailurePanicsAbort checks the abort directly: over
// HTTP/1.1 a short body with a Content-Length is already fatal to the
// connection, but other transports (HTTP/2, wrappers) need the panic to
// reset the stream instead of ending it as if complete.
func TestMidResponseFailurePanicsAbort(t *testing.T) {
	const cs = testChunkSize
	src := newFakeSource(cs)
	data := src.add("m", "M", "audio/mpeg", 5*cs, 0)
	src.tamper("m", 3)
	s := NewServer(src, ServerOptions{}, nil)
	t.Cleanup(func() { s.Close() })

	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("handler panicked with %v, want http.ErrAbortHandler", p)
			}
		}()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/media/m", nil))
	}()
	if got := rec.Body.Bytes(); !bytes.Equal(got, data[:len(got)]) || len(got) > 3*cs {
		t.Errorf("recorded %d bytes, not a verified prefix of %d", len(got), 3*cs)
	}
}
