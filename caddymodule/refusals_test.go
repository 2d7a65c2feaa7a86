package caddymodule

// What the handler refuses: raw access to the origin, other methods, every
// kind of malformed or forged request; and what no answer, refusal or not,
// may carry (the origin's headers, injected header lines).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-drm/caddy-drm/protocol"
)

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
			for _, r := range []struct {
				id    string
				index int64
			}{
				{"multi/long.mp3", 99}, // 416
				{"nope.flac", 0},       // 404, not in the catalog
				{"gone.flac", 0},       // 404 from the origin
				{"broken.flac", 0},     // 502
			} {
				if _, err := c.ReadChunk(ctx, r.id, r.index); err == nil {
					t.Errorf("chunk %d of %s was served", r.index, r.id)
				}
			}
			e.do(t, "GET", e.srv.URL+"/one.flac", nil)    // 403
			e.do(t, "GET", e.url+"/v1/chunk", nil)        // 405
			e.post(t, "chunk", []byte("not an envelope")) // 400
			// A replayed request is 409, whether or not the client's
			// early rekeys avoided every rekey-required.
			replayed := e.session(t).NewCatalogRequest().Envelope()
			e.post(t, "catalog", replayed)
			e.post(t, "catalog", replayed)
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
			for _, s := range []int{200, 400, 403, 404, 405, 409, 416, 502} {
				if !seen[s] {
					t.Errorf("no exchange with status %d was checked", s)
				}
			}
		})
	}
}

// TestFailHeader: the Drm-Error reason cannot inject header lines or
// control characters, and is bounded however much of the request it
// quotes; an error the protocol has no code for is a 500 that says
// nothing of itself.
func TestFailHeader(t *testing.T) {
	_, long := protocol.ParseSuites([]string{strings.Repeat("é", 4096)}) // quotes 8 KiB of two-byte runes
	for _, c := range []struct {
		name   string
		err    error
		status int
		prefix string
	}{
		{"control characters", fmt.Errorf("%w: line\r\nX-Injected: 1\x00\x7f", protocol.ErrMalformed), 400, "malformed: "},
		{"long reason", long, 400, "unknown-suite: "},
		{"a bug", errors.New("nil map in the handler"), 500, "internal: internal error"},
		{"busy", protocol.ErrBusy, 503, "busy: "},
		{"origin", fmt.Errorf("%w: /secret/path answered 500", protocol.ErrOrigin), 502, "origin: origin failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			err := (&Handler{}).fail(w, c.err)
			var he caddyhttp.HandlerError
			if !errors.As(err, &he) || he.StatusCode != c.status {
				t.Fatalf("fail returned %v, want status %d", err, c.status)
			}
			de := w.Header().Get("Drm-Error")
			if strings.ContainsAny(de, "\r\n\x00\x7f") || !strings.HasPrefix(de, c.prefix) || w.Header().Get("X-Injected") != "" {
				t.Fatalf("Drm-Error %q", de)
			}
			if _, reason, _ := strings.Cut(de, ": "); len(reason) > 512 || !utf8.ValidString(reason) {
				t.Fatalf("reason of %d bytes (valid UTF-8: %v)", len(reason), utf8.ValidString(reason))
			}
		})
	}
}
