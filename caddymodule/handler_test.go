package caddymodule

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// edgeSizes are the media sizes around chunk boundaries.
func edgeSizes(cs int) map[string]int {
	return map[string]int{
		"empty.flac":     0,
		"one.flac":       1,
		"short.flac":     cs - 1,
		"exact.flac":     cs,
		"plus-one.flac":  cs + 1,
		"multi/long.mp3": 3*cs + 7,
	}
}

func edgeFiles(cs int) map[string][]byte {
	files := map[string][]byte{}
	i := byte(0)
	for id, n := range edgeSizes(cs) {
		files[id] = mediaBytes(n, i)
		i++
	}
	return files
}

// TestChunksByteIdentical reads every chunk of media of every edge size
// through a real client, for each way an origin may answer a Range
// sub-request, and checks the bytes and the refusal past the end.
func TestChunksByteIdentical(t *testing.T) {
	for _, mode := range []originMode{rangeMode, fullMode, fullNoLengthMode} {
		for _, listing := range []bool{true, false} {
			name := mode.String() + "/listing"
			if !listing {
				name = mode.String() + "/catalog-file"
			}
			t.Run(name, func(t *testing.T) {
				files := edgeFiles(testChunkSize)
				o := newOrigin(mode, listing, files)
				if !listing {
					var entries []catalogEntry
					for id := range files {
						entries = append(entries, catalogEntry{ID: id})
					}
					o.set("catalog.json", catalogJSON(entries...))
				}
				e := newEnv(t, o, nil)
				c := e.client(t)
				items, err := c.Catalog(context.Background())
				if err != nil {
					t.Fatalf("Catalog: %v", err)
				}
				sizes := map[string]int64{}
				for _, it := range items {
					sizes[it.ID] = it.Size
				}
				for id, want := range files {
					t.Run(id, func(t *testing.T) {
						multi := len(want) > testChunkSize
						if mode == fullNoLengthMode && multi {
						}
						if mode == fullNoLengthMode && !listing && len(want) > 1 {
						}
						if got, ok := sizes[id]; !ok || got != int64(len(want)) {
							t.Fatalf("catalog size of %s = %d (listed %v), want %d", id, got, ok, len(want))
						}
						got := readAll(t, c, id, len(want))
						if !bytes.Equal(got, want) {
							t.Fatalf("%s: got %d bytes, want %d; first difference at %d", id, len(got), len(want), firstDiff(got, want))
						}
						past := int64(max(1, (len(want)+testChunkSize-1)/testChunkSize))
						if _, err := c.ReadChunk(context.Background(), id, past); err == nil {
							t.Fatalf("%s: chunk %d past the end was served", id, past)
						}
						ex := e.rec.exchanges()
						last := ex[len(ex)-1]
						if last.Status != http.StatusRequestedRangeNotSatisfiable || !strings.HasPrefix(last.Header.Get("Drm-Error"), "out-of-range:") {
							t.Errorf("%s: chunk past the end: %d %q, want 416 out-of-range", id, last.Status, last.Header.Get("Drm-Error"))
						}
					})
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestUnknownMediaID: ids that are not in the catalog are refused with 404
// and never reach the origin, even when the origin has such a file.
func TestUnknownMediaID(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{
		"a.flac":     mediaBytes(10, 1),
		"notes.txt":  []byte("not media"),
		"cover.jpg":  []byte("jpeg"),
		"sub/b.flac": mediaBytes(10, 2),
	})
	o.set("catalog.json", catalogJSON(catalogEntry{ID: "a.flac", Title: "A"}))
	e := newEnv(t, o, nil)
	s := e.session(t)
	for _, id := range []string{"nope.flac", "notes.txt", "cover.jpg", "catalog.json", "sub", "A.flac", "a.flac/x"} {
		req := s.NewChunkRequest(id, 0)
		resp, _ := e.post(t, "chunk", req.Envelope())
		wantRefusal(t, "chunk of "+id, resp, http.StatusNotFound, "not-found")
	}
	for _, r := range o.reqs() {
		if r.Header.Get("Range") != "" {
			t.Errorf("the origin was asked for a range of %s", r.URL.Path)
		}
		if p := r.URL.Path; p == "/notes.txt" || p == "/cover.jpg" || p == "/nope.flac" || p == "/catalog.json/" {
			t.Errorf("the origin was asked for %s", p)
		}
	}
}

// TestRawAccessForbidden: anything but the protocol's endpoints is 403, and
// the next handler is never called for it.
func TestRawAccessForbidden(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(100, 1)})
	e := newEnv(t, o, nil)
	p := e.h.Prefix
	for _, tc := range []struct{ method, path string }{
		{"GET", "/a.flac"},
		{"POST", "/a.flac"},
		{"GET", "/"},
		{"GET", "/catalog.json"},
		{"GET", p},
		{"GET", p + "/"},
		{"POST", p + "/v1"},
		{"GET", p + "/v2/chunk"},
		{"POST", p + "/../a.flac"},
		{"GET", p + "x/v1/chunk"},
		{"GET", strings.ToUpper(p) + "/v1/chunk"},
	} {
		resp, body := e.do(t, tc.method, e.srv.URL+tc.path, nil, "Range", "bytes=0-10")
		wantRefusal(t, tc.method+" "+tc.path, resp, http.StatusForbidden, "forbidden")
		if len(body) != 0 && bytes.Contains(body, mediaBytes(100, 1)[:10]) {
			t.Errorf("%s %s: the body holds media bytes", tc.method, tc.path)
		}
	}
	// Paths under the endpoints that name no endpoint: 405 for GET, 404
	// for POST; never the origin.
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", p + "/v1/../../a.flac", http.StatusMethodNotAllowed},
		{"POST", p + "/v1/../../a.flac", http.StatusNotFound},
		{"POST", p + "/v1/a.flac", http.StatusNotFound},
		{"POST", p + "/v1/chunk/a.flac", http.StatusNotFound},
		{"POST", p + "/v1/", http.StatusNotFound},
	} {
		resp, _ := e.do(t, tc.method, e.srv.URL+tc.path, nil)
		wantRefusal(t, tc.method+" "+tc.path, resp, tc.status, "malformed")
	}
	if n := e.next.calls.Load(); n != 0 {
		t.Fatalf("next was called %d times (paths %v)", n, o.paths())
	}
}

// TestMethodNotAllowed: the endpoints take POST only.
func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, nil), nil)
	for _, ep := range []string{"handshake", "catalog", "chunk", "rekey", "close"} {
		for _, m := range []string{"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"} {
			resp, _ := e.do(t, m, e.url+"/v1/"+ep, nil)
			wantRefusal(t, m+" "+ep, resp, http.StatusMethodNotAllowed, "malformed")
			if got := resp.Header.Get("Allow"); got != "POST" {
				t.Errorf("%s %s: Allow %q, want POST", m, ep, got)
			}
		}
	}
	if n := e.next.calls.Load(); n != 0 {
		t.Fatalf("next was called %d times", n)
	}
}

// TestRotation: with two chunks per key epoch, reading seven chunks makes
// the client rekey (early and at the limit) without the reader noticing.
func TestRotation(t *testing.T) {
	const n = 7
	want := mediaBytes(n*testChunkSize, 9)
	o := newOrigin(rangeMode, true, map[string][]byte{"song.flac": want})
	e := newEnv(t, o, func(h *Handler) { h.RekeyAfterChunks = 2 })
	c := e.client(t)
	if _, err := c.Catalog(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, c, "song.flac", len(want))
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes differ at %d", firstDiff(got, want))
	}
	// Background rekeys may still be running: wait for them.
	deadline := time.Now().Add(5 * time.Second)
	for e.rec.count("rekey", http.StatusOK) < n/2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.rec.count("rekey", http.StatusOK); got < n/2 {
		t.Errorf("%d rekeys for %d chunks at 2 chunks per epoch, want at least %d", got, n, n/2)
	}
	if hs := e.rec.count("handshake", 0); hs != 1 {
		t.Errorf("%d handshakes, want 1: rotation must not need new sessions", hs)
	}
	for _, ex := range e.rec.exchanges() {
		if ex.Status >= 500 {
			t.Errorf("%s %s: %d %q", ex.Method, ex.Path, ex.Status, ex.Header.Get("Drm-Error"))
		}
	}
	// The server never served more than two chunks under one epoch: a
	// raw session that does not rekey is stopped at the third chunk.
	s := e.session(t)
	for i := range 3 {
		req := s.NewChunkRequest("song.flac", uint64(i))
		resp, _ := e.post(t, "chunk", req.Envelope())
		if i < 2 && resp.StatusCode != http.StatusOK {
			t.Fatalf("chunk %d: %s %q", i, resp.Status, resp.Header.Get("Drm-Error"))
		}
		if i == 2 {
			wantRefusal(t, "third chunk of an epoch", resp, http.StatusConflict, "rekey-required")
		}
	}
}

// TestConcurrentClients reads every file with several clients at once
// (for the race detector: pooled buffers, the catalog, the store).
func TestConcurrentClients(t *testing.T) {
	files := edgeFiles(testChunkSize)
	e := newEnv(t, newOrigin(rangeMode, true, files), nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client(t)
			for id, want := range files {
				if got := readAll(t, c, id, len(want)); !bytes.Equal(got, want) {
					t.Errorf("client %d: %s differs", w, id)
				}
			}
			if err := c.Close(context.Background()); err != nil {
				t.Errorf("client %d: Close: %v", w, err)
			}
		}()
	}
	wg.Wait()
	if n := e.h.sessions.Len(); n != 0 {
		t.Errorf("%d sessions left after every client closed", n)
	}
}

// TestOriginHeadersNeverLeak runs every kind of exchange, successful and
// refused, and checks that no header of the origin reaches the client.
func TestOriginHeadersNeverLeak(t *testing.T) {
	for _, mode := range []originMode{rangeMode, fullMode} {
		t.Run(mode.String(), func(t *testing.T) {
			files := edgeFiles(testChunkSize)
			o := newOrigin(mode, true, files)
			o.set("catalog.json", catalogJSON(catalogEntry{ID: "one.flac", Title: "One", Duration: 1.5}))
			o.set("gone.flac", mediaBytes(5, 1))
			o.handle("/gone.flac", func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("X-Origin-Secret", originSecret)
				return caddyhttp.Error(http.StatusNotFound, errors.New("gone"))
			})
			o.set("broken.flac", mediaBytes(5, 1))
			o.handle("/broken.flac", func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("X-Origin-Secret", originSecret)
				w.WriteHeader(http.StatusInternalServerError)
				return nil
			})
			e := newEnv(t, o, func(h *Handler) { h.RekeyAfterChunks = 2 })
			c := e.client(t)
			ctx := context.Background()
			if _, err := c.Catalog(ctx); err != nil {
				t.Fatal(err)
			}
			for id, want := range files {
				readAll(t, c, id, len(want))
			}
			c.ReadChunk(ctx, "multi/long.mp3", 99) // 416
			c.ReadChunk(ctx, "nope.flac", 0)       // 404, not in the catalog
			c.ReadChunk(ctx, "gone.flac", 0)       // 404 from the origin
			c.ReadChunk(ctx, "broken.flac", 0)     // 502
			e.do(t, "GET", e.srv.URL+"/one.flac", nil)
			e.do(t, "GET", e.url+"/v1/chunk", nil)
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			seen := map[int]bool{}
			for _, ex := range e.rec.exchanges() {
				seen[ex.Status] = true
				for _, h := range originHeaders {
					if v := ex.Header.Get(h); v != "" {
						t.Errorf("%s %s (%d): origin header %s: %q", ex.Method, ex.Path, ex.Status, h, v)
					}
				}
				for k, vs := range ex.Header {
					for _, v := range vs {
						if strings.Contains(v, originSecret) {
							t.Errorf("%s %s (%d): header %s carries the origin's secret: %q", ex.Method, ex.Path, ex.Status, k, v)
						}
					}
				}
				if ct := ex.Header.Get("Content-Type"); ex.Status == http.StatusOK && ct != "application/octet-stream" && ct != "application/json" {
					t.Errorf("%s %s: Content-Type %q", ex.Method, ex.Path, ct)
				}
			}
			for _, s := range []int{200, 403, 404, 405, 409, 416, 502} {
				if s == 409 && e.rec.count("rekey", 200) > 0 {
					continue // the early rekeys may have avoided every 409
				}
				if !seen[s] {
					t.Errorf("no exchange with status %d was checked", s)
				}
			}
		})
	}
}

// TestSessionIdleExpiry: an idle session expires on the server; the client
// gets unknown-session and transparently opens a new one.
func TestSessionIdleExpiry(t *testing.T) {
	want := mediaBytes(2*testChunkSize, 3)
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": want})
	const idle = 300 * time.Millisecond
	e := newEnv(t, o, func(h *Handler) { h.SessionIdleTimeout = caddy.Duration(idle) })
	c := e.client(t)
	ctx := context.Background()
	first, err := c.ReadChunk(ctx, "a.flac", 0)
	if err != nil {
		t.Fatal(err)
	}
	raw := e.session(t)
	time.Sleep(idle + 200*time.Millisecond)
	second, err := c.ReadChunk(ctx, "a.flac", 1)
	if err != nil {
		t.Fatalf("after the idle timeout: %v", err)
	}
	if !bytes.Equal(append(first, second...), want) {
		t.Fatal("bytes differ")
	}
	if n := e.rec.count("chunk", http.StatusForbidden); n < 1 {
		t.Errorf("no chunk request was refused as unknown-session")
	}
	if n := e.rec.count("handshake", http.StatusOK); n < 3 { // client twice, raw once
		t.Errorf("%d handshakes, want the client's second one too", n)
	}
	// The raw session expired as well.
	resp, _ := e.post(t, "catalog", raw.NewCatalogRequest().Envelope())
	wantRefusal(t, "expired raw session", resp, http.StatusForbidden, "unknown-session")
}

// handshakeBody is a fresh, valid ClientHello.
func handshakeBody(t testing.TB, e *env) []byte {
	t.Helper()
	_, hello, err := e.clientConfig(nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	return hello
}

// TestMaxSessions: the store is bounded; a full store refuses handshakes
// with 503, Retry-After and busy, and a close makes room again.
func TestMaxSessions(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}}), func(h *Handler) { h.MaxSessions = 2 })
	s1 := e.session(t)
	e.session(t)
	resp, _ := e.post(t, "handshake", handshakeBody(t, e))
	wantRefusal(t, "third handshake", resp, http.StatusServiceUnavailable, "busy")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// The client reports the refusal.
	if _, err := e.client(t).Catalog(context.Background()); !errors.Is(err, protocol.ErrBusy) {
		t.Errorf("client on a full server: %v, want a busy error", err)
	}
	// Closing a session makes room.
	req := s1.NewCloseRequest()
	resp, body := e.post(t, "close", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("close: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if _, err := req.OpenReply(body); err != nil {
		t.Fatalf("close reply: %v", err)
	}
	resp, _ = e.post(t, "handshake", handshakeBody(t, e))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("handshake after a close: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
}

// TestCloseRemovesSession: a close request ends the session at once.
func TestCloseRemovesSession(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1, 2, 3}}), nil)
	c := e.client(t)
	if _, err := c.ReadChunk(context.Background(), "a.flac", 0); err != nil {
		t.Fatal(err)
	}
	if n := e.h.sessions.Len(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.h.sessions.Len(); n != 0 {
		t.Fatalf("%d sessions after close, want 0", n)
	}
	s := e.session(t)
	resp, _ := e.post(t, "close", s.NewCloseRequest().Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	for _, req := range []*protocol.Request{s.NewCatalogRequest(), s.NewCloseRequest()} {
		resp, _ = e.post(t, req.Type().String(), req.Envelope())
		wantRefusal(t, req.Type().String()+" after close", resp, http.StatusForbidden, "unknown-session")
	}
	req := s.NewChunkRequest("a.flac", 0)
	resp, _ = e.post(t, "chunk", req.Envelope())
	wantRefusal(t, "chunk after close", resp, http.StatusForbidden, "unknown-session")
	// The client recovers with a new session.
	if _, err := c.ReadChunk(context.Background(), "a.flac", 0); err != nil {
		t.Fatalf("client after its close: %v", err)
	}
}

// flip returns a copy of b with byte i xor-ed with x.
func flip(b []byte, i int, x byte) []byte {
	c := bytes.Clone(b)
	if i < 0 {
		i += len(c)
	}
	c[i] ^= x
	return c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// envelopeFor builds an envelope header for an arbitrary session id,
// followed by junk.
func envelopeFor(t protocol.MessageType, id []byte, epoch uint32, seq uint64, rest []byte) []byte {
	b := append([]byte{1, byte(t)}, id...) // version 1
	b = binary.BigEndian.AppendUint32(b, epoch)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, rest...)
}

// TestMalformedRequests: every kind of broken request gets a 4xx and a
// Drm-Error with the right code; nothing is a 5xx or a panic.
func TestMalformedRequests(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(100, 1), "secret.txt": []byte("secret")})
	e := newEnv(t, o, nil)
	s := e.session(t)
	catalogReq := func() []byte { return s.NewCatalogRequest().Envelope() }
	chunkPayload := func(id string, index uint64) []byte { return s.NewChunkRequest(id, index).Envelope() }
	rekeyReq := func() []byte {
		rk, err := s.StartRekey()
		if err != nil {
			t.Fatal(err)
		}
		return rk.Request().Envelope()
	}
	const hdr = 30 // the request header (docs/PROTOCOL.md §12)
	type tc struct {
		name     string
		endpoint string
		body     func() []byte
		status   int
		code     string
	}
	cases := []tc{
		{"empty body", "catalog", func() []byte { return nil }, 400, "malformed"},
		{"garbage", "catalog", func() []byte { return []byte("this is not an envelope, not at all") }, 400, "version"},
		{"garbage with version byte", "chunk", func() []byte { return append([]byte{1, 2}, randomBytes(80)...) }, 403, "unknown-session"},
		{"one byte", "chunk", func() []byte { return []byte{1} }, 400, "malformed"},
		{"truncated header", "catalog", func() []byte { return catalogReq()[:hdr-1] }, 400, "malformed"},
		{"header only", "catalog", func() []byte { return catalogReq()[:hdr] }, 403, "authentication"},
		{"truncated tag", "catalog", func() []byte { r := catalogReq(); return r[:len(r)-1] }, 403, "authentication"},
		{"flipped version", "catalog", func() []byte { return flip(catalogReq(), 0, 0x02) }, 400, "version"},
		{"flipped type", "catalog", func() []byte { return flip(catalogReq(), 1, 0x02) }, 400, "wrong-message"},
		{"flipped session id", "catalog", func() []byte { return flip(catalogReq(), 2, 0x01) }, 403, "unknown-session"},
		{"future epoch", "catalog", func() []byte { return flip(catalogReq(), 18, 0x01) }, 403, "authentication"},
		{"flipped sequence number", "catalog", func() []byte { return flip(catalogReq(), hdr-1, 0x01) }, 403, "authentication"},
		{"flipped ciphertext", "catalog", func() []byte { return flip(catalogReq(), -1, 0x80) }, 403, "authentication"},
		{"flipped chunk payload", "chunk", func() []byte { r := s.NewChunkRequest("a.flac", 0); return flip(r.Envelope(), hdr+3, 0x10) }, 403, "authentication"},
		{"chunk to catalog", "catalog", func() []byte { r := s.NewChunkRequest("a.flac", 0); return r.Envelope() }, 400, "wrong-message"},
		{"catalog to chunk", "chunk", catalogReq, 400, "wrong-message"},
		{"close to rekey", "rekey", func() []byte { return s.NewCloseRequest().Envelope() }, 400, "wrong-message"},
		{"rekey to close", "close", rekeyReq, 400, "wrong-message"},
		{"unknown session", "catalog", func() []byte { return envelopeFor(protocol.MsgCatalog, randomBytes(16), 0, 0, randomBytes(16)) }, 403, "unknown-session"},
		{"zero session", "close", func() []byte { return envelopeFor(protocol.MsgClose, make([]byte, 16), 0, 0, randomBytes(16)) }, 403, "unknown-session"},
		{"request too large", "catalog", func() []byte { return append(catalogReq(), make([]byte, protocol.MaxRequestSize)...) }, 400, "malformed"},
		{"request at the size limit", "catalog", func() []byte {
			r := catalogReq()
			return append(r, make([]byte, protocol.MaxRequestSize-len(r))...)
		}, 403, "authentication"},
		{"handshake too large", "handshake", func() []byte { return bytes.Repeat([]byte(" "), protocol.MaxHandshakeSize+1) }, 400, "malformed"},
		{"chunk without media id", "chunk", func() []byte { return chunkPayload("", 0) }, 400, "media-id"},
		{"chunk media id ..", "chunk", func() []byte { return chunkPayload("../secret.txt", 0) }, 400, "media-id"},
		{"chunk media id absolute", "chunk", func() []byte { return chunkPayload("/secret.txt", 0) }, 400, "media-id"},
		{"chunk media id NUL", "chunk", func() []byte { return chunkPayload("a.flac\x00", 0) }, 400, "media-id"},
		{"chunk media id backslash", "chunk", func() []byte { return chunkPayload(`..\secret.txt`, 0) }, 400, "media-id"},
		{"chunk media id invalid UTF-8", "chunk", func() []byte { return chunkPayload("a\xff.flac", 0) }, 400, "media-id"},
		{"chunk media id not in catalog", "chunk", func() []byte { return chunkPayload("secret.txt", 0) }, 404, "not-found"},
		{"chunk index past the end", "chunk", func() []byte { return chunkPayload("a.flac", 1) }, 416, "out-of-range"},
		{"chunk index huge", "chunk", func() []byte { return chunkPayload("a.flac", 1<<63) }, 416, "out-of-range"},
		{"chunk index max", "chunk", func() []byte { return chunkPayload("a.flac", ^uint64(0)) }, 416, "out-of-range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.post(t, c.endpoint, c.body())
			wantRefusal(t, c.name, resp, c.status, c.code)
			if len(body) != 0 {
				t.Errorf("refusal with a %d-byte body", len(body))
			}
		})
	}
	// A request under an epoch a rekey retired is refused.
	old := catalogReq()
	rk, err := s.StartRekey()
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.post(t, "rekey", rk.Request().Envelope())
	if resp.StatusCode != 200 {
		t.Fatalf("rekey: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if err := rk.Finish(body); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.post(t, "catalog", old)
	wantRefusal(t, "retired epoch", resp, http.StatusConflict, "epoch-retired")
	// A replayed request is refused.
	r := catalogReq()
	if resp, _ := e.post(t, "catalog", r); resp.StatusCode != 200 {
		t.Fatalf("catalog: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	resp, _ = e.post(t, "catalog", r)
	wantRefusal(t, "replay", resp, http.StatusConflict, "replay")
	// The session survived every refusal.
	req := s.NewCatalogRequest()
	resp, body = e.post(t, "catalog", req.Envelope())
	if resp.StatusCode != 200 {
		t.Fatalf("catalog after the malformed requests: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if _, err := req.OpenReply(body); err != nil {
		t.Fatal(err)
	}
	for _, p := range o.paths() {
		if strings.Contains(p, "secret") {
			t.Errorf("the origin was asked for %s", p)
		}
	}
}

// wireHello is a ClientHello as docs/PROTOCOL.md §6 spells it, for
// crafting broken ones.
type wireHello struct {
	Version   int               `json:"version"`
	Random    []byte            `json:"random"`
	Suites    []string          `json:"suites"`
	KeyShares map[string][]byte `json:"key_shares"`
}

// TestHandshakeErrors: broken ClientHellos are refused with 400 and the
// right code, and make no session.
func TestHandshakeErrors(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, nil), nil)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hello := func(mut func(*wireHello)) []byte {
		ch := wireHello{
			Version:   1,
			Random:    randomBytes(32),
			Suites:    []string{"X25519_AES128_GCM_SHA256"},
			KeyShares: map[string][]byte{"X25519": x25519.PublicKey().Bytes()},
		}
		mut(&ch)
		b, err := json.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	many := make([]string, 129)
	for i := range many {
		many[i] = "X25519_AES128_GCM_SHA256"
	}
	cases := []struct {
		name string
		body []byte
		code string
		in   []string // the Drm-Error must contain these
	}{
		{"empty", nil, "malformed", nil},
		{"not JSON", []byte("hello server"), "malformed", nil},
		{"JSON array", []byte("[]"), "malformed", nil},
		{"binary", randomBytes(200), "malformed", nil},
		{"wrong version", hello(func(ch *wireHello) { ch.Version = 2 }), "version", nil},
		{"version zero", hello(func(ch *wireHello) { ch.Version = 0 }), "version", nil},
		{"short random", hello(func(ch *wireHello) { ch.Random = ch.Random[:8] }), "malformed", nil},
		{"no suites", hello(func(ch *wireHello) { ch.Suites = nil }), "malformed", nil},
		{"too many suites", hello(func(ch *wireHello) { ch.Suites = many }), "malformed", nil},
		{"no key shares", hello(func(ch *wireHello) { ch.KeyShares = nil }), "malformed", nil},
		{"no key share for the negotiated group", hello(func(ch *wireHello) {
			ch.KeyShares = map[string][]byte{"P256": randomBytes(65)}
		}), "key-share", []string{"X25519"}},
		{"bad key share", hello(func(ch *wireHello) { ch.KeyShares["X25519"] = []byte{1, 2, 3} }), "key-share", nil},
		{"low-order key share", hello(func(ch *wireHello) { ch.KeyShares["X25519"] = make([]byte, 32) }), "key-share", nil},
		{"bad hybrid key share", hello(func(ch *wireHello) {
			ch.Suites = []string{"X25519MLKEM768_AES128_GCM_SHA256"}
			ch.KeyShares = map[string][]byte{"X25519MLKEM768": randomBytes(100)}
		}), "key-share", nil},
		{"no common suite", hello(func(ch *wireHello) {
			ch.Suites = []string{"FFDHE2048_AES128_GCM_SHA256", "MADE_UP_SUITE"}
			ch.KeyShares = map[string][]byte{"FFDHE2048": randomBytes(256)}
		}), "no-common-suite", []string{"FFDHE2048_AES128_GCM_SHA256", "MADE_UP_SUITE", "X25519MLKEM768_AES128_GCM_SHA256", "P256_AES256_GCM_SHA384"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.post(t, "handshake", c.body)
			wantRefusal(t, c.name, resp, http.StatusBadRequest, c.code)
			for _, s := range c.in {
				if de := resp.Header.Get("Drm-Error"); !strings.Contains(de, s) {
					t.Errorf("Drm-Error %q does not name %s", de, s)
				}
			}
			if len(body) != 0 {
				t.Errorf("refusal with a %d-byte body", len(body))
			}
		})
	}
	if n := e.h.sessions.Len(); n != 0 {
		t.Errorf("%d sessions after refused handshakes", n)
	}
	// The same suites and shares, done right, are accepted.
	resp, _ := e.post(t, "handshake", hello(func(*wireHello) {}))
	if resp.StatusCode != 200 {
		t.Fatalf("valid hello: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
}

// TestNonDefaultSuites: a handler configured with an encrypt-then-MAC and
// a finite-field suite serves a client that offers only those.
func TestNonDefaultSuites(t *testing.T) {
	want := mediaBytes(2*testChunkSize+5, 4)
	names := []string{"FFDHE2048_AES128_CBC_SHA256", "P256_CHACHA20_POLY1305_SHA384"}
	var suites []protocol.Suite
	for _, n := range names {
		s, err := protocol.ParseSuites([]string{n})
		if err != nil {
			t.Fatalf("suite %s: %v", n, err)
		}
		suites = append(suites, s...)
	}
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": want}), func(h *Handler) { h.Suites = names })
	for _, s := range suites {
		hs, hello, err := e.clientConfig([]protocol.Suite{s}).Start()
		if err != nil {
			t.Fatal(err)
		}
		resp, body := e.post(t, "handshake", hello)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s %q", s.Name(), resp.Status, resp.Header.Get("Drm-Error"))
		}
		sess, err := hs.Finish(body)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for i := range 3 {
			req := sess.NewChunkRequest("a.flac", uint64(i))
			resp, body := e.post(t, "chunk", req.Envelope())
			if resp.StatusCode != 200 {
				t.Fatalf("%s chunk %d: %s %q", s.Name(), i, resp.Status, resp.Header.Get("Drm-Error"))
			}
			c, err := req.OpenChunk(body)
			if err != nil {
				t.Fatalf("%s chunk %d: %v", s.Name(), i, err)
			}
			got = append(got, c.Data...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: bytes differ", s.Name())
		}
	}
	// A default client (offering neither) is refused, naming both lists.
	resp, _ := e.post(t, "handshake", handshakeBody(t, e))
	wantRefusal(t, "default client", resp, http.StatusBadRequest, "no-common-suite")
}

// TestProvision covers defaults and configuration errors.
func TestProvision(t *testing.T) {
	pki := newPKI(t)
	t.Run("defaults", func(t *testing.T) {
		h := &Handler{Certificate: pki.ServerCert, Key: pki.ServerKey, Prefix: uniquePrefix()}
		if err := provision(t, h); err != nil {
			t.Fatal(err)
		}
		if h.ChunkSize != protocol.DefaultChunkSize || h.RekeyAfterChunks != protocol.DefaultRekeyChunks ||
			h.RekeyAfterBytes != protocol.DefaultRekeyBytes || time.Duration(h.RekeyAfterAge) != protocol.DefaultRekeyAge ||
			time.Duration(h.SessionIdleTimeout) != 10*time.Minute || h.MaxSessions != 100000 ||
			h.OriginPath != "/" || h.CatalogFile != "catalog.json" {
			t.Errorf("defaults: %+v", h)
		}
		if got := h.server.Limits; got != protocol.DefaultLimits() {
			t.Errorf("limits %+v, want %+v", got, protocol.DefaultLimits())
		}
		if len(h.server.Suites) != len(protocol.DefaultSuites()) {
			t.Errorf("suites %v", h.server.Suites)
		}
	})
	t.Run("prefix normalized", func(t *testing.T) {
		for in, want := range map[string]string{"media/drm/": "/media/drm", "/x": "/x", "//y//": "/y"} {
			h := &Handler{Certificate: pki.ServerCert, Key: pki.ServerKey, Prefix: in}
			if err := provision(t, h); err != nil {
				t.Fatal(err)
			}
			if h.Prefix != want {
				t.Errorf("prefix %q became %q, want %q", in, h.Prefix, want)
			}
		}
	})
	for _, c := range []struct {
		name string
		h    Handler
		want string
	}{
		{"certificate without key", Handler{Certificate: pki.ServerCert}, "together"},
		{"key without certificate", Handler{Key: pki.ServerKey}, "together"},
		{"missing certificate file", Handler{Certificate: filepath.Join(t.TempDir(), "none.crt"), Key: pki.ServerKey}, "none.crt"},
		{"unknown suite", Handler{Suites: []string{"ROT13_SHA1"}}, "ROT13_SHA1"},
		{"chunk too small", Handler{ChunkSize: 100}, "chunk_size"},
		{"chunk too large", Handler{ChunkSize: protocol.MaxChunkSize + 1}, "chunk_size"},
		{"rekey bytes below a chunk", Handler{ChunkSize: 4096, RekeyAfterBytes: 4095}, "rekey_after_bytes"},
		{"negative max sessions", Handler{MaxSessions: -1}, "max_sessions"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.h
			if h.Certificate == "" && h.Key == "" {
				h.Certificate, h.Key = pki.ServerCert, pki.ServerKey
			}
			h.Prefix = uniquePrefix()
			err := provision(t, &h)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// TestRekeyAgeBelowOneSecond: a rekey_after_age under a second must not
// silently turn the age limit off.
func TestRekeyAgeBelowOneSecond(t *testing.T) {
	pki := newPKI(t)
	h := &Handler{Certificate: pki.ServerCert, Key: pki.ServerKey, Prefix: uniquePrefix(), RekeyAfterAge: caddy.Duration(500 * time.Millisecond)}
	err := provision(t, h)
	if err == nil && h.server.Limits.AgeSeconds == 0 {
		t.Fatal("rekey_after_age 500ms was accepted and disables the age limit (AgeSeconds 0)")
	}
}

// TestDevelopmentPKI: without certificate and key the handler makes a
// development PKI in Caddy's data directory, whose root a client pins.
func TestDevelopmentPKI(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	want := mediaBytes(10, 7)
	h := &Handler{Prefix: uniquePrefix(), ChunkSize: testChunkSize}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(data, "caddy", "drm", "pki", "root.crt")
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": want})
	srv := newServerFor(t, h, o)
	roots, err := keystore.LoadRoots(root)
	if err != nil {
		t.Fatal(err)
	}
	c := clientFor(t, srv.URL+h.Prefix, roots)
	got, err := c.ReadChunk(context.Background(), "a.flac", 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("through the development PKI: %v", err)
	}
	// A second provisioning reuses the same PKI.
	h2 := &Handler{Prefix: uniquePrefix(), ChunkSize: testChunkSize}
	if err := provision(t, h2); err != nil {
		t.Fatal(err)
	}
	srv2 := newServerFor(t, h2, o)
	if _, err := clientFor(t, srv2.URL+h2.Prefix, roots).ReadChunk(context.Background(), "a.flac", 0); err != nil {
		t.Fatalf("second handler, same root: %v", err)
	}
}

// TestPrefixRoot: prefix "/" puts the endpoints at /v1/….
func TestPrefixRoot(t *testing.T) {
	want := mediaBytes(10, 7)
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": want}), func(h *Handler) { h.Prefix = "/" })
	c := clientFor(t, e.srv.URL, e.roots)
	got, err := c.ReadChunk(context.Background(), "a.flac", 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("prefix /: %v", err)
	}
}

// TestSessionStoreSharedAcrossReloads: a handler provisioned with the same
// settings (a config reload) keeps the sessions of the old one.
func TestSessionStoreSharedAcrossReloads(t *testing.T) {
	pki := newPKI(t)
	prefix := uniquePrefix()
	mk := func() *Handler {
		h := &Handler{Prefix: prefix, Certificate: pki.ServerCert, Key: pki.ServerKey, ChunkSize: testChunkSize}
		if err := provision(t, h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1, 2, 3}})
	old := mk()
	srv := newServerFor(t, old, o)
	roots, _ := keystore.LoadRoots(pki.RootCert)
	c := clientFor(t, srv.URL+prefix, roots)
	if _, err := c.ReadChunk(context.Background(), "a.flac", 0); err != nil {
		t.Fatal(err)
	}
	reloaded := mk()
	if reloaded.sessions != old.sessions {
		t.Fatal("the reloaded handler has a new session store")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if refs, ok := sessionPool.References(reloaded.poolKey); !ok || refs != 1 {
		t.Fatalf("store references after the old config's cleanup: %d %v", refs, ok)
	}
	if n := reloaded.sessions.Len(); n != 1 {
		t.Fatalf("the reloaded handler holds %d sessions, want 1", n)
	}
	old.poolKey = "" // already cleaned up
}

// TestFailSanitizesHeader: the Drm-Error reason cannot inject header
// lines or control characters.
func TestFailSanitizesHeader(t *testing.T) {
	h := &Handler{}
	w := httptest.NewRecorder()
	err := h.fail(w, 400, fmt.Errorf("%w: line\r\nX-Injected: 1\x00\x7f", protocol.ErrMalformed))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 400 {
		t.Fatalf("fail returned %v", err)
	}
	if de := w.Header().Get("Drm-Error"); strings.ContainsAny(de, "\r\n\x00\x7f") || !strings.HasPrefix(de, "malformed: ") {
		t.Fatalf("Drm-Error %q", de)
	}
	if w.Header().Get("X-Injected") != "" {
		t.Fatal("header injected")
	}
}

// TestMetrics: the collectors are registered in the config's registry
// (again on a reload, without error) and count handshakes, chunks and
// refusals.
func TestMetrics(t *testing.T) {
	pki := newPKI(t)
	sum := func(reg interface {
		Gather() ([]*dto.MetricFamily, error)
	}, name string, labels map[string]string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metrics:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue metrics
					}
				}
				total += m.GetCounter().GetValue()
			}
		}
		return total
	}
	var regs []*caddy.Context
	var handlers []*Handler
	for range 2 { // a reload registers the same collectors again
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		h := &Handler{Prefix: uniquePrefix(), Certificate: pki.ServerCert, Key: pki.ServerKey, ChunkSize: testChunkSize}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Cleanup() })
		if err := h.Validate(); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, &ctx)
		handlers = append(handlers, h)
	}
	reg := regs[1].GetMetricsRegistry()
	h := handlers[1]
	h.logger = zap.NewNop()
	roots, _ := keystore.LoadRoots(pki.RootCert)
	want := mediaBytes(2*testChunkSize, 1)
	srv := newServerFor(t, h, newOrigin(rangeMode, true, map[string][]byte{"a.flac": want}))
	before := map[string]float64{
		"hs":     sum(reg, "caddy_drm_handshakes_total", map[string]string{"result": "ok"}),
		"chunks": sum(reg, "caddy_drm_chunks_total", nil),
		"bytes":  sum(reg, "caddy_drm_chunk_plaintext_bytes_total", nil),
		"errs":   sum(reg, "caddy_drm_errors_total", map[string]string{"code": "not-found"}),
	}
	c := clientFor(t, srv.URL+h.Prefix, roots)
	readAll(t, c, "a.flac", len(want))
	c.ReadChunk(context.Background(), "nope.flac", 0)
	after := map[string]float64{
		"hs":     sum(reg, "caddy_drm_handshakes_total", map[string]string{"result": "ok"}),
		"chunks": sum(reg, "caddy_drm_chunks_total", nil),
		"bytes":  sum(reg, "caddy_drm_chunk_plaintext_bytes_total", nil),
		"errs":   sum(reg, "caddy_drm_errors_total", map[string]string{"code": "not-found"}),
	}
	for k, d := range map[string]float64{"hs": 1, "chunks": 2, "bytes": float64(len(want)), "errs": 1} {
		if got := after[k] - before[k]; got != d {
			t.Errorf("%s grew by %v, want %v", k, got, d)
		}
	}
}

// TestUnauthenticatedRequestsDoNotKeepSessionsAlive: the session id is in
// the clear header of every request, so a request that fails to
// authenticate must not count as use of the session; otherwise anyone who
// saw an id keeps the session (and its slot under max_sessions) alive
// forever.
func TestUnauthenticatedRequestsDoNotKeepSessionsAlive(t *testing.T) {
	const idle = 400 * time.Millisecond
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}}), func(h *Handler) { h.SessionIdleTimeout = caddy.Duration(idle) })
	s := e.session(t)
	id := s.ID()
	for range 8 {
		time.Sleep(idle / 4)
		resp, _ := e.post(t, "catalog", envelopeFor(protocol.MsgCatalog, id[:], 0, 1<<40, randomBytes(32)))
		// Refused as forged while the session lives, as unknown once the
		// idle timeout (which the forgeries must not reset) has passed.
		if code := wireCode(protocol.ErrorFromCode(resp.Header.Get("Drm-Error"))); resp.StatusCode != http.StatusForbidden || code != "authentication" && code != "unknown-session" {
			t.Fatalf("forged request: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
		}
	}
	resp, _ := e.post(t, "catalog", s.NewCatalogRequest().Envelope())
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("a session unused for %v (idle timeout %v) was kept alive by forged requests", 2*idle, idle)
	}
	wantRefusal(t, "expired session", resp, http.StatusForbidden, "unknown-session")
}
