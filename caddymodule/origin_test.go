package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 1024-2047/3079", 1024, 2047, 3079, true},
		{"bytes 5-5/6", 5, 5, 6, true},
		{"bytes 0-9/*", 0, 0, 0, false},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes 5-4/10", 0, 0, 0, false},
		{"bytes -1-5/10", 0, 0, 0, false},
		{"bytes 0-9/-10", 0, 0, 0, false},
		{"bytes 0-9", 0, 0, 0, false},
		{"bytes 09/10", 0, 0, 0, false},
		{"items 0-9/10", 0, 0, 0, false},
		{"bytes */10", 0, 0, 0, false},
		{"bytes 0-9/10 ", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		s, e, tot, ok := parseContentRange(c.in)
		if ok != c.ok || (ok && (s != c.start || e != c.end || tot != c.total)) {
			t.Errorf("parseContentRange(%q) = %d %d %d %v, want %d %d %d %v", c.in, s, e, tot, ok, c.start, c.end, c.total, c.ok)
		}
	}
}

func TestParseUnsatisfiedRange(t *testing.T) {
	for _, c := range []struct {
		in    string
		total int64
		ok    bool
	}{
		{"bytes */0", 0, true},
		{"bytes */3079", 3079, true},
		{"bytes */-1", 0, false},
		{"bytes */", 0, false},
		{"bytes 0-1/2", 0, false},
		{"", 0, false},
	} {
		tot, ok := parseUnsatisfiedRange(c.in)
		if ok != c.ok || (ok && tot != c.total) {
			t.Errorf("parseUnsatisfiedRange(%q) = %d %v, want %d %v", c.in, tot, ok, c.total, c.ok)
		}
	}
}

func TestOriginPathFor(t *testing.T) {
	for _, c := range []struct{ prefix, id, want string }{
		{"/", "a.flac", "/a.flac"},
		{"/", "dir/a b.flac", "/dir/a b.flac"},
		{"/media", "a/b.flac", "/media/a/b.flac"},
		{"media/", "a.flac", "/media/a.flac"},
		{"/media/", "", "/media"},
		{"/", "", "/"},
	} {
		if got := originPathFor(c.prefix, c.id); got != c.want {
			t.Errorf("originPathFor(%q, %q) = %q, want %q", c.prefix, c.id, got, c.want)
		}
	}
}

func TestCaptureWriter(t *testing.T) {
	t.Run("1xx and second WriteHeader ignored", func(t *testing.T) {
		w := &captureWriter{header: http.Header{}, limit: 10, skip: -1}
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusPartialContent)
		w.WriteHeader(http.StatusOK)
		if w.status != http.StatusPartialContent {
			t.Fatalf("status %d", w.status)
		}
	})
	t.Run("Write without WriteHeader is 200 and skips to offset", func(t *testing.T) {
		w := &captureWriter{header: http.Header{}, limit: 4, skip: -1, offset: 5}
		for _, p := range []string{"012", "345", "678", "9ab"} {
			n, err := w.Write([]byte(p))
			if n != len(p) {
				t.Fatalf("Write(%q) = %d", p, n)
			}
			if err != nil && !errors.Is(err, errEnough) {
				t.Fatal(err)
			}
		}
		if w.status != http.StatusOK || string(w.buf) != "5678" || w.seen != 12 || !errors.Is(w.copyErr, errEnough) {
			t.Fatalf("status %d buf %q seen %d copyErr %v", w.status, w.buf, w.seen, w.copyErr)
		}
	})
	t.Run("206 does not skip", func(t *testing.T) {
		w := &captureWriter{header: http.Header{}, limit: 4, skip: -1, offset: 5}
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("abcd"))
		if string(w.buf) != "abcd" || w.copyErr != nil {
			t.Fatalf("buf %q copyErr %v", w.buf, w.copyErr)
		}
	})
	t.Run("limit reached exactly is not an error", func(t *testing.T) {
		w := &captureWriter{header: http.Header{}, limit: 4, skip: -1}
		if _, err := w.Write([]byte("abcd")); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(nil); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("e")); !errors.Is(err, errEnough) {
			t.Fatalf("write past the limit: %v", err)
		}
	})
}

// TestSubRequest: the origin sees a GET of the media path, without body,
// query or any header of the client.
func TestSubRequest(t *testing.T) {
	r := httptest.NewRequest("POST", "/drm/v1/chunk?x=1", strings.NewReader("body"))
	for k, v := range map[string]string{
		"Authorization": "Bearer token", "Cookie": "s=1", "If-None-Match": `"x"`, "If-Range": `"x"`,
		"Range": "bytes=0-", "Accept-Encoding": "gzip", "X-Forwarded-For": "1.2.3.4", "Content-Type": "application/octet-stream",
	} {
		r.Header.Set(k, v)
	}
	sub := subRequest(r, "/media/a b.flac")
	if sub.Method != http.MethodGet || sub.URL.Path != "/media/a b.flac" || sub.URL.RawQuery != "" || sub.ContentLength != 0 {
		t.Errorf("sub-request %s %s ?%s length %d", sub.Method, sub.URL.Path, sub.URL.RawQuery, sub.ContentLength)
	}
	if sub.RequestURI != "/media/a%20b.flac" {
		t.Errorf("RequestURI %q", sub.RequestURI)
	}
	if n, _ := sub.Body.Read(make([]byte, 1)); n != 0 {
		t.Error("sub-request has a body")
	}
	want := http.Header{"Accept-Encoding": {"identity"}, "User-Agent": {"caddy-drm"}}
	if fmt.Sprint(sub.Header) != fmt.Sprint(want) {
		t.Errorf("sub-request headers %v, want %v", sub.Header, want)
	}
	if r.URL.Path != "/drm/v1/chunk" || r.URL.RawQuery != "x=1" || r.Method != "POST" || r.Header.Get("Authorization") == "" {
		t.Error("subRequest changed the client's request")
	}
}

// TestSubRequestsCarryNoClientHeader drives the handler with a client
// that sends credentials and conditionals; the origin sees none of them.
func TestSubRequestsCarryNoClientHeader(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(3*testChunkSize, 1)})
	o.set("catalog.json", catalogJSON(catalogEntry{ID: "a.flac"}))
	e := newEnv(t, o, nil)
	s := e.session(t)
	clientHdr := []string{"Authorization", "Bearer t", "Cookie", "c=1", "If-None-Match", `"x"`, "If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT", "Range", "bytes=5-", "Accept-Encoding", "gzip"}
	for i := range 3 {
		req := s.NewChunkRequest("a.flac", uint64(i))
		resp, _ := e.do(t, "POST", e.url+"/v1/chunk?debug=1", req.Envelope(), clientHdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("chunk %d: %s %q", i, resp.Status, resp.Header.Get("Drm-Error"))
		}
	}
	if len(o.reqs()) == 0 {
		t.Fatal("the origin saw no request")
	}
	for _, r := range o.reqs() {
		if r.Method != http.MethodGet || r.URL.RawQuery != "" {
			t.Errorf("origin request %s %s?%s", r.Method, r.URL.Path, r.URL.RawQuery)
		}
		for k := range r.Header {
			switch k {
			case "Accept-Encoding", "User-Agent", "Range", "Accept":
			default:
				t.Errorf("origin request %s carries the client's header %s", r.URL.Path, k)
			}
		}
		if ae := r.Header.Get("Accept-Encoding"); ae != "identity" {
			t.Errorf("origin request %s: Accept-Encoding %q", r.URL.Path, ae)
		}
		if rg := r.Header.Get("Range"); rg == "bytes=5-" {
			t.Errorf("origin request %s carries the client's Range", r.URL.Path)
		}
	}
}

// originFunc is a next handler that answers every request with f.
func originFunc(f caddyhttp.HandlerFunc) caddyhttp.Handler { return f }

// TestFetchRange drives fetchRange against origins that answer in every
// way, valid or not.
func TestFetchRange(t *testing.T) {
	data := mediaBytes(3*testChunkSize+7, 5)
	total := int64(len(data))
	r := httptest.NewRequest("POST", "/drm/v1/chunk", nil)
	cs := int64(testChunkSize)
	fileOrigin := func(mode originMode) caddyhttp.Handler {
		return newOrigin(mode, false, map[string][]byte{"a.flac": data, "empty.flac": {}})
	}
	for _, mode := range []originMode{rangeMode, fullMode, fullNoLengthMode} {
		for _, idx := range []int64{0, 1, 3} {
			name := fmt.Sprintf("%s/chunk%d", mode, idx)
			t.Run(name, func(t *testing.T) {
				off := idx * cs
				want := data[off:min(off+cs, total)]
				got, err := fetchRange(r, fileOrigin(mode), "/a.flac", off, cs, make([]byte, 0, cs))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.data, want) || got.total != total {
					t.Fatalf("got %d bytes of %d, want %d of %d", len(got.data), got.total, len(want), total)
				}
			})
		}
		t.Run(mode.String()+"/past the end", func(t *testing.T) {
			_, err := fetchRange(r, fileOrigin(mode), "/a.flac", 4*cs, cs, make([]byte, 0, cs))
			if wireCode(err) != "out-of-range" {
				t.Fatalf("past the end: %v", err)
			}
		})
		t.Run(mode.String()+"/empty", func(t *testing.T) {
			got, err := fetchRange(r, fileOrigin(mode), "/empty.flac", 0, cs, make([]byte, 0, cs))
			if err != nil || got.total != 0 || len(got.data) != 0 {
				t.Fatalf("empty media: %+v %v", got, err)
			}
			if _, err := fetchRange(r, fileOrigin(mode), "/empty.flac", cs, cs, make([]byte, 0, cs)); wireCode(err) != "out-of-range" {
				t.Fatalf("chunk 1 of empty media: %v", err)
			}
		})
		t.Run(mode.String()+"/missing", func(t *testing.T) {
			if _, err := fetchRange(r, fileOrigin(mode), "/nope.flac", 0, cs, make([]byte, 0, cs)); wireCode(err) != "not-found" {
				t.Fatalf("missing media: %v", err)
			}
		})
	}

	for _, c := range []struct {
		name string
		next caddyhttp.HandlerFunc
		want string // wire code
	}{
		{"HandlerError 404 without writing", func(w http.ResponseWriter, r *http.Request) error {
			return caddyhttp.Error(404, errors.New("no such file"))
		}, "not-found"},
		{"HandlerError 403 without writing", func(w http.ResponseWriter, r *http.Request) error {
			return caddyhttp.Error(403, errors.New("permission denied"))
		}, "not-found"},
		{"HandlerError 500 without writing", func(w http.ResponseWriter, r *http.Request) error {
			return caddyhttp.Error(500, errors.New("boom"))
		}, "origin"},
		{"plain error without writing", func(w http.ResponseWriter, r *http.Request) error {
			return errors.New("dial tcp: connection refused")
		}, "origin"},
		{"writes 404", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(404); return nil }, "not-found"},
		{"writes 410", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(410); return nil }, "not-found"},
		{"writes 500", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(500); return nil }, "origin"},
		{"writes 502", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(502); return nil }, "origin"},
		{"redirects", func(w http.ResponseWriter, r *http.Request) error {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return nil
		}, "origin"},
		{"writes 304", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(304); return nil }, "origin"},
		{"416 for a non-empty medium", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Range", "bytes */10")
			w.WriteHeader(416)
			return nil
		}, "out-of-range"},
		{"416 without Content-Range", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(416); return nil }, "out-of-range"},
		{"206 without Content-Range", func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(206)
			w.Write(data[:cs])
			return nil
		}, "origin"},
		{"206 of another range", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 1-%d/%d", cs, total))
			w.WriteHeader(206)
			w.Write(data[1 : cs+1])
			return nil
		}, "origin"},
		{"206 truncated", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", cs-1, total))
			w.WriteHeader(206)
			w.Write(data[:cs/2])
			return errors.New("upstream: unexpected EOF")
		}, "origin"},
		{"200 with a bad Content-Length and more than a chunk", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Length", "many")
			w.WriteHeader(200)
			_, err := w.Write(data)
			return err
		}, "origin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := fetchRange(r, originFunc(c.next), "/a.flac", 0, cs, make([]byte, 0, cs))
			if got := wireCode(err); got != c.want {
				t.Fatalf("error %v (%q), want %q", err, got, c.want)
			}
		})
	}
}

// truncatingOrigin answers 200 with the full Content-Length but fails
// after half a chunk, as reverse_proxy does when its upstream dies
// mid-body.
func truncatingOrigin(data []byte) caddyhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write(data[:testChunkSize/2]); err != nil {
			return err
		}
		return caddyhttp.Error(http.StatusBadGateway, errors.New("reading from upstream: unexpected EOF"))
	}
}

// TestFetchRangeTruncatedFullBody: a 200 answer that ends early (its
// Content-Length promised more) is origin trouble, not a short chunk.
func TestFetchRangeTruncatedFullBody(t *testing.T) {
	data := mediaBytes(3*testChunkSize, 2)
	r := httptest.NewRequest("POST", "/drm/v1/chunk", nil)
	got, err := fetchRange(r, truncatingOrigin(data), "/a.flac", 0, testChunkSize, make([]byte, 0, testChunkSize))
	if wireCode(err) != "origin" {
		t.Fatalf("truncated 200 answer: %d bytes of %d, error %v; want ErrOrigin", len(got.data), got.total, err)
	}
}

// TestTruncatedOriginBodyIs502: the same through the handler: the client
// must get 502, not a sealed chunk shorter than the media size says.
func TestTruncatedOriginBodyIs502(t *testing.T) {
	data := mediaBytes(3*testChunkSize, 2)
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": data})
	o.handle("/a.flac", truncatingOrigin(data))
	e := newEnv(t, o, nil)
	s := e.session(t)
	req := s.NewChunkRequest("a.flac", 0)
	resp, body := e.post(t, "chunk", req.Envelope())
	if resp.StatusCode == 200 {
		_, err := req.OpenChunk(body)
		t.Fatalf("truncated origin body served with 200 (client: %v)", err)
	}
	wantRefusal(t, "truncated origin body", resp, http.StatusBadGateway, "origin")
}

func TestFetchWhole(t *testing.T) {
	r := httptest.NewRequest("POST", "/drm/v1/catalog", nil)
	big := func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write(make([]byte, 100))
		return err
	}
	if _, _, _, err := fetchWhole(r, originFunc(big), "/catalog.json", "", 99); wireCode(err) != "origin" {
		t.Errorf("larger than the limit: %v", err)
	}
	status, _, body, err := fetchWhole(r, originFunc(big), "/catalog.json", "", 100)
	if err != nil || status != 200 || len(body) != 100 {
		t.Errorf("at the limit: %d %d %v", status, len(body), err)
	}
	notFound := func(w http.ResponseWriter, r *http.Request) error { return caddyhttp.Error(404, errors.New("nope")) }
	if status, _, _, err := fetchWhole(r, originFunc(notFound), "/catalog.json", "", 100); err != nil || status != 404 {
		t.Errorf("HandlerError 404: %d %v", status, err)
	}
	plain := func(w http.ResponseWriter, r *http.Request) error { return errors.New("dial: refused") }
	if _, _, _, err := fetchWhole(r, originFunc(plain), "/catalog.json", "", 100); wireCode(err) != "origin" {
		t.Errorf("plain error: %v", err)
	}
	var accept string
	echo := func(w http.ResponseWriter, r *http.Request) error { accept = r.Header.Get("Accept"); return nil }
	if status, _, _, err := fetchWhole(r, originFunc(echo), "/", "application/json", 100); err != nil || status != 200 || accept != "application/json" {
		t.Errorf("empty answer: %d %v, Accept %q", status, err, accept)
	}
}

// TestOriginFailuresThroughHandler: a medium in the catalog that the
// origin cannot serve gives 404 or 502 with a Drm-Error, never 500.
func TestOriginFailuresThroughHandler(t *testing.T) {
	files := map[string][]byte{}
	for _, id := range []string{"gone.flac", "forbidden.flac", "broken.flac", "error.flac", "plain.flac", "redirect.flac",
		"timeout.flac", "timeout-written.flac", "aborted.flac", "html.flac", "resized.flac", "panic-free.flac"} {
		files[id] = mediaBytes(10, 3)
	}
	o := newOrigin(rangeMode, true, files)
	o.handle("/gone.flac", func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(404, errors.New("gone"))
	})
	o.handle("/forbidden.flac", func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(403)
		return nil
	})
	o.handle("/broken.flac", func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(500)
		return nil
	})
	o.handle("/error.flac", func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(500, errors.New("boom"))
	})
	o.handle("/plain.flac", func(w http.ResponseWriter, r *http.Request) error { return errors.New("boom") })
	o.handle("/redirect.flac", func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, "/elsewhere.flac", http.StatusMovedPermanently)
		return nil
	})
	// reverse_proxy's upstream timing out, as it reports it, or a proxy
	// in between answering 504.
	o.handle("/timeout.flac", func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(http.StatusGatewayTimeout, context.DeadlineExceeded)
	})
	o.handle("/timeout-written.flac", func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusGatewayTimeout)
		return nil
	})
	// reverse_proxy's upstream hanging up mid-body: it aborts with a panic.
	o.handle("/aborted.flac", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Range", "bytes 0-9/10")
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("01234"))
		panic(http.ErrAbortHandler)
	})
	o.handle("/html.flac", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("0123456789")) // even of the medium's size
		return nil
	})
	e := newEnv(t, o, nil)
	s := e.session(t)
	// resized.flac changes after the catalog was read: refused, not
	// served under the catalog's size.
	if _, err := e.h.catalog.lookup(httptest.NewRequest("POST", "/", nil), e.next, "resized.flac"); err != nil {
		t.Fatal(err)
	}
	o.set("resized.flac", mediaBytes(11, 3))
	for id, want := range map[string]struct {
		status int
		code   string
	}{
		"gone.flac":            {404, "not-found"},
		"forbidden.flac":       {404, "not-found"},
		"broken.flac":          {502, "origin"},
		"error.flac":           {502, "origin"},
		"plain.flac":           {502, "origin"},
		"redirect.flac":        {502, "origin"},
		"timeout.flac":         {504, "origin-timeout"},
		"timeout-written.flac": {504, "origin-timeout"},
		"aborted.flac":         {502, "origin"},
		"html.flac":            {502, "origin"},
		"resized.flac":         {502, "origin"},
	} {
		req := s.NewChunkRequest(id, 0)
		resp, _ := e.post(t, "chunk", req.Envelope())
		wantRefusal(t, id, resp, want.status, want.code)
	}
	// The session is fine afterwards.
	req := s.NewChunkRequest("panic-free.flac", 0)
	if resp, _ := e.post(t, "chunk", req.Envelope()); resp.StatusCode != 200 {
		t.Fatalf("healthy medium after origin failures: %s", resp.Status)
	}
}

// TestWholeOriginFailing: a next handler that has nothing (404 without
// writing) or fails (500) for everything: the catalog is 502 origin.
func TestWholeOriginFailing(t *testing.T) {
	for name, next := range map[string]caddyhttp.HandlerFunc{
		"404 HandlerError": func(w http.ResponseWriter, r *http.Request) error {
			return caddyhttp.Error(http.StatusNotFound, errors.New("not here"))
		},
		"writes 500": func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusInternalServerError)
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, next, nil)
			s := e.handshake(t)
			resp, _ := e.post(t, "catalog", s.NewCatalogRequest().Envelope())
			wantRefusal(t, "catalog", resp, http.StatusBadGateway, "origin")
			req := s.NewChunkRequest("a.flac", 0)
			resp, _ = e.post(t, "chunk", req.Envelope())
			wantRefusal(t, "chunk", resp, http.StatusBadGateway, "origin")
		})
	}
}

// TestOriginErrorsDoNotLeakInternals: the Drm-Error reason goes to
// untrusted clients; it must not carry the origin's error text (file
// system paths, upstream addresses, Go source positions).
func TestOriginErrorsDoNotLeakInternals(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"gone.flac": {1}, "down.flac": {1}})
	o.handle("/gone.flac", func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(404, errors.New("stat /srv/private-library/gone.flac: no such file or directory"))
	})
	o.handle("/down.flac", func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(502, errors.New("dial tcp 10.20.30.40:9000: connect: connection refused"))
	})
	e := newEnv(t, o, nil)
	s := e.session(t)
	for _, id := range []string{"gone.flac", "down.flac"} {
		req := s.NewChunkRequest(id, 0)
		resp, _ := e.post(t, "chunk", req.Envelope())
		de := resp.Header.Get("Drm-Error")
		for _, secret := range []string{"/srv/private-library", "10.20.30.40", "origin_test.go", ".go:"} {
			if strings.Contains(de, secret) {
				t.Errorf("%s: Drm-Error %q discloses %q", id, de, secret)
			}
		}
	}
}
