package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// catalogOf fetches the catalog through a real client.
func catalogOf(t *testing.T, e *env) []protocol.MediaInfo {
	t.Helper()
	items, err := e.client(t).Catalog(context.Background())
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	return items
}

func wantCatalog(t *testing.T, got, want []protocol.MediaInfo) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("catalog\n%s\nwant\n%s", g, w)
	}
}

// TestCatalogFromListing: only a JSON directory listing: media files of
// every directory level, with their sizes, titles from the file name and
// content types from the extension; nothing else of the origin.
func TestCatalogFromListing(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{
		"b-side.mp3":              make([]byte, 20),
		"a.flac":                  make([]byte, 10),
		"Loud.OPUS":               make([]byte, 3),
		"notes.txt":               []byte("not media"),
		"cover.jpg":               []byte("jpeg"),
		"catalog.json.bak":        []byte("[]"),
		"albums/one/01 Intro.wav": make([]byte, 44),
		"albums/one/02.m4a":       make([]byte, 5),
		"albums/two/clip.mkv":     make([]byte, 7),
		"albums/README.md":        []byte("readme"),
		"empty-dir/.keep":         {},
	})
	e := newEnv(t, o, nil)
	wantCatalog(t, catalogOf(t, e), []protocol.MediaInfo{
		{ID: "Loud.OPUS", Title: "Loud", Size: 3, ContentType: "audio/ogg; codecs=opus"},
		{ID: "a.flac", Title: "a", Size: 10, ContentType: "audio/flac"},
		{ID: "albums/one/01 Intro.wav", Title: "01 Intro", Size: 44, ContentType: "audio/wav"},
		{ID: "albums/one/02.m4a", Title: "02", Size: 5, ContentType: "audio/mp4"},
		{ID: "albums/two/clip.mkv", Title: "clip", Size: 7, ContentType: "video/x-matroska"},
		{ID: "b-side.mp3", Title: "b-side", Size: 20, ContentType: "audio/mpeg"},
	})
	// Directory listings were asked with a trailing slash and Accept JSON.
	for _, r := range o.reqs() {
		if strings.HasSuffix(r.URL.Path, "/") && !strings.Contains(r.Header.Get("Accept"), "application/json") {
			t.Errorf("listing of %s without Accept: application/json", r.URL.Path)
		}
	}
}

// TestCatalogFromFile: only a catalog file (no listing): ids, titles,
// durations and content types from the file, sizes from one-byte Range
// requests; entries the origin does not serve, invalid ids and the
// catalog file itself are left out.
func TestCatalogFromFile(t *testing.T) {
	o := newOrigin(rangeMode, false, map[string][]byte{
		"a.flac":         make([]byte, 1000),
		"sub/b.mp3":      make([]byte, 33),
		"empty.flac":     {},
		"lecture.bin":    make([]byte, 9),
		"secret/key.pem": []byte("secret"),
	})
	o.set("catalog.json", catalogJSON(
		catalogEntry{ID: "a.flac", Title: "Track A", Duration: 12.5},
		catalogEntry{ID: "sub/b.mp3", ContentType: "audio/x-custom"},
		catalogEntry{ID: "empty.flac", Title: "Silence"},
		catalogEntry{ID: "lecture.bin", Title: "Lecture", ContentType: "audio/flac", Duration: 3600},
		catalogEntry{ID: "missing.flac", Title: "Not on the origin"},
		catalogEntry{ID: "../secret/key.pem"},
		catalogEntry{ID: "/abs.flac"},
		catalogEntry{ID: "catalog.json"},
		catalogEntry{ID: ""},
		catalogEntry{ID: "a.flac", Title: "Duplicate"},
	))
	e := newEnv(t, o, nil)
	wantCatalog(t, catalogOf(t, e), []protocol.MediaInfo{
		{ID: "a.flac", Title: "Track A", Size: 1000, ContentType: "audio/flac", Duration: 12.5},
		{ID: "sub/b.mp3", Title: "b", Size: 33, ContentType: "audio/x-custom"},
		{ID: "empty.flac", Title: "Silence", Size: 0, ContentType: "audio/flac"},
		{ID: "lecture.bin", Title: "Lecture", Size: 9, ContentType: "audio/flac", Duration: 3600},
	})
	for _, p := range o.paths() {
		if strings.Contains(p, "secret") {
			t.Errorf("the origin was asked for %s", p)
		}
	}
	// A medium named only by the catalog file (not media by its
	// extension) is served; the catalog file itself is not.
	s := e.session(t)
	req := s.NewChunkRequest("lecture.bin", 0)
	if resp, _ := e.post(t, "chunk", req.Envelope()); resp.StatusCode != 200 {
		t.Errorf("lecture.bin: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	req = s.NewChunkRequest("catalog.json", 0)
	resp, _ := e.post(t, "chunk", req.Envelope())
	wantRefusal(t, "catalog.json", resp, http.StatusNotFound, "not-found")
}

// TestCatalogMerge: file and listing together: the file's entries first,
// completed with the listing's sizes; media found only by the listing
// after them, sorted; nothing twice.
func TestCatalogMerge(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{
		"z-last.flac":   make([]byte, 4),
		"a.flac":        make([]byte, 10),
		"dir/c.ogg":     make([]byte, 6),
		"dir/b.mp3":     make([]byte, 8),
		"extra.bin":     make([]byte, 2),
		"ignore-me.txt": []byte("text"),
	})
	o.set("catalog.json", catalogJSON(
		catalogEntry{ID: "z-last.flac", Title: "Zed", Duration: 4.25},
		catalogEntry{ID: "dir/b.mp3", Title: "Bee", ContentType: "audio/mp3"},
		catalogEntry{ID: "extra.bin", Title: "Extra"},
	))
	e := newEnv(t, o, nil)
	wantCatalog(t, catalogOf(t, e), []protocol.MediaInfo{
		{ID: "z-last.flac", Title: "Zed", Size: 4, ContentType: "audio/flac", Duration: 4.25},
		{ID: "dir/b.mp3", Title: "Bee", Size: 8, ContentType: "audio/mp3"},
		{ID: "extra.bin", Title: "Extra", Size: 2, ContentType: "application/octet-stream"},
		{ID: "a.flac", Title: "a", Size: 10, ContentType: "audio/flac"},
		{ID: "dir/c.ogg", Title: "c", Size: 6, ContentType: "audio/ogg"},
	})
	// Sizes of entries the listing has need no Range probe.
	for _, r := range o.reqs() {
		if r.Header.Get("Range") != "" && r.URL.Path != "/extra.bin" {
			t.Errorf("size probe of %s although the listing has it", r.URL.Path)
		}
	}
}

// TestCatalogOriginPath: ids are relative to origin_path, and catalog_file
// is read from there.
func TestCatalogOriginPath(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{
		"library/a.flac":      make([]byte, 10),
		"library/sub/b.flac":  make([]byte, 11),
		"library/index.json":  catalogJSON(catalogEntry{ID: "a.flac", Title: "A"}),
		"elsewhere/c.flac":    make([]byte, 12),
		"catalog.json":        catalogJSON(catalogEntry{ID: "elsewhere/c.flac"}),
		"library-other/d.mp3": make([]byte, 1),
	})
	want := mediaBytes(11, 4)
	o.set("library/sub/b.flac", want)
	e := newEnv(t, o, func(h *Handler) { h.OriginPath = "/library"; h.CatalogFile = "index.json" })
	wantCatalog(t, catalogOf(t, e), []protocol.MediaInfo{
		{ID: "a.flac", Title: "A", Size: 10, ContentType: "audio/flac"},
		{ID: "sub/b.flac", Title: "b", Size: 11, ContentType: "audio/flac"},
	})
	got, err := e.client(t).ReadChunk(context.Background(), "sub/b.flac", 0)
	if err != nil || string(got) != string(want) {
		t.Fatalf("sub/b.flac: %v", err)
	}
	for _, p := range o.paths() {
		if !strings.HasPrefix(p, "/library/") {
			t.Errorf("the origin was asked for %s, outside origin_path", p)
		}
	}
}

// TestCatalogDepth: the listing is walked maxListingDepth directories
// deep, no deeper.
func TestCatalogDepth(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{
		"d1/d2/d3/d4/deep.flac":      {1},
		"d1/d2/d3/d4/d5/deeper.flac": {2},
	})
	e := newEnv(t, o, nil)
	var ids []string
	for _, it := range catalogOf(t, e) {
		ids = append(ids, it.ID)
	}
	if !slices.Equal(ids, []string{"d1/d2/d3/d4/deep.flac"}) {
		t.Fatalf("ids %v", ids)
	}
}

// TestCatalogEmpty: an origin with an empty listing has an empty catalog
// (a JSON array, not null).
func TestCatalogEmpty(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"only.txt": []byte("x")})
	e := newEnv(t, o, nil)
	s := e.session(t)
	req := s.NewCatalogRequest()
	resp, body := e.post(t, "catalog", req.Envelope())
	if resp.StatusCode != 200 {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	payload, err := req.OpenReply(body)
	if err != nil {
		t.Fatal(err)
	}
	if string(payload) != "[]" {
		t.Fatalf("empty catalog is %q, want []", payload)
	}
}

// TestCatalogBrokenSources: a broken source is ignored when the other one
// works; with neither, the catalog is 502 with a reason naming both.
func TestCatalogBrokenSources(t *testing.T) {
	t.Run("bad catalog file, good listing", func(t *testing.T) {
		o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1, 2}})
		o.set("catalog.json", []byte("{not json"))
		items := catalogOf(t, newEnv(t, o, nil))
		if len(items) != 1 || items[0].ID != "a.flac" {
			t.Fatalf("catalog %+v", items)
		}
	})
	t.Run("catalog file too large", func(t *testing.T) {
		o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1, 2}})
		o.set("catalog.json", []byte("["+strings.Repeat(" ", maxCatalogBytes)+"]"))
		items := catalogOf(t, newEnv(t, o, nil))
		if len(items) != 1 || items[0].ID != "a.flac" {
			t.Fatalf("catalog %+v", items)
		}
	})
	t.Run("HTML listing, good file", func(t *testing.T) {
		o := newOrigin(rangeMode, false, map[string][]byte{"a.flac": {1, 2}})
		o.set("catalog.json", catalogJSON(catalogEntry{ID: "a.flac"}))
		o.handle("/", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, err := w.Write([]byte("<html>listing</html>"))
			return err
		})
		o.handle("//", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, err := w.Write([]byte("<html>listing</html>"))
			return err
		})
		items := catalogOf(t, newEnv(t, o, nil))
		if len(items) != 1 || items[0].ID != "a.flac" || items[0].Size != 2 {
			t.Fatalf("catalog %+v", items)
		}
	})
	t.Run("neither", func(t *testing.T) {
		o := newOrigin(rangeMode, false, map[string][]byte{"a.flac": {1, 2}})
		o.set("catalog.json", []byte("nope"))
		e := newEnv(t, o, nil)
		s := e.handshake(t)
		resp, _ := e.post(t, "catalog", s.NewCatalogRequest().Envelope())
		wantRefusal(t, "catalog", resp, http.StatusBadGateway, "origin")
		// The details (both sources and why they failed) go to the log,
		// not to the client.
		if de := resp.Header.Get("Drm-Error"); de != "origin: "+protocol.ErrOrigin.Error() {
			t.Errorf("Drm-Error %q", de)
		}
		// A chunk request cannot be served either: 502 too.
		req := s.NewChunkRequest("a.flac", 0)
		resp, _ = e.post(t, "chunk", req.Envelope())
		wantRefusal(t, "chunk", resp, http.StatusBadGateway, "origin")
	})
}

// TestCatalogCache: the catalog is cached; an unknown id refreshes it at
// most every catalogMissTTL, so unknown ids cannot hammer the origin, and
// a medium published later is found once the cache is old enough.
func TestCatalogCache(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}})
	e := newEnv(t, o, nil)
	c := e.client(t)
	catalogOf(t, e)
	before := len(o.reqs())
	for range 3 {
		if _, err := c.Catalog(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s := e.session(t)
	for i := range 20 {
		req := s.NewChunkRequest("new.flac", uint64(i))
		resp, _ := e.post(t, "chunk", req.Envelope())
		wantRefusal(t, "unknown id", resp, http.StatusNotFound, "not-found")
	}
	if n := len(o.reqs()) - before; n != 0 {
		t.Fatalf("%d origin requests for cached catalogs and unknown ids within %v", n, catalogMissTTL)
	}
	// Publish a medium and age the cache past catalogMissTTL (but not
	// catalogTTL): the next unknown id refreshes once.
	want := mediaBytes(5, 1)
	o.set("new.flac", want)
	e.h.catalog.mu.Lock()
	e.h.catalog.snap.fetched = time.Now().Add(-catalogMissTTL - time.Millisecond)
	e.h.catalog.mu.Unlock()
	req := s.NewChunkRequest("new.flac", 0)
	resp, body := e.post(t, "chunk", req.Envelope())
	if resp.StatusCode != 200 {
		t.Fatalf("new medium after the refresh: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if c, err := req.OpenChunk(body); err != nil || string(c.Data) != string(want) {
		t.Fatalf("new medium: %v", err)
	}
	// A known id in a fresh catalog needs no origin request but the chunk.
	before = len(o.reqs())
	req = s.NewChunkRequest("a.flac", 0)
	if resp, _ := e.post(t, "chunk", req.Envelope()); resp.StatusCode != http.StatusOK {
		t.Fatalf("known medium: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if n := len(o.reqs()) - before; n != 1 {
		t.Fatalf("%d origin requests for one chunk of a known id, want 1", n)
	}
	// After catalogTTL the catalog request refreshes; a removed medium
	// leaves it.
	o.mu.Lock()
	delete(o.fsys, "a.flac")
	o.mu.Unlock()
	e.h.catalog.mu.Lock()
	e.h.catalog.snap.fetched = time.Now().Add(-catalogTTL)
	e.h.catalog.mu.Unlock()
	items, err := c.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != "new.flac" {
		t.Fatalf("catalog after the TTL: %+v", items)
	}
}

// TestCatalogRefreshFailure: when a refresh fails, the
// handler says so (502) instead of serving from a stale catalog forever;
// once the origin recovers, so does the catalog.
func TestCatalogRefreshFailure(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}})
	e := newEnv(t, o, nil)
	catalogOf(t, e)
	down := func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("down"))
	}
	for _, p := range []string{"/", "//", "/catalog.json"} {
		o.handle(p, down)
	}
	e.h.catalog.mu.Lock()
	e.h.catalog.snap.fetched = time.Now().Add(-catalogTTL)
	e.h.catalog.mu.Unlock()
	s := e.handshake(t)
	resp, _ := e.post(t, "catalog", s.NewCatalogRequest().Envelope())
	wantRefusal(t, "catalog while the origin is down", resp, http.StatusBadGateway, "origin")
	o.mu.Lock()
	o.override = map[string]caddyhttp.Handler{}
	o.mu.Unlock()
	if items := catalogOf(t, e); len(items) != 1 {
		t.Fatalf("catalog after recovery: %+v", items)
	}
}

// TestCatalogListingNamesAreRaw: Caddy's browse JSON gives file names as
// they are (only "url" is escaped), so names with '%' must not be
// unescaped.
func TestCatalogListingNamesAreRaw(t *testing.T) {
	files := map[string][]byte{"100%.flac": mediaBytes(7, 1), "a%20b.flac": mediaBytes(8, 2), "plain.flac": mediaBytes(9, 3)}
	o := newOrigin(rangeMode, true, files)
	e := newEnv(t, o, nil)
	var ids []string
	for _, it := range catalogOf(t, e) {
		ids = append(ids, it.ID)
	}
	if !slices.Equal(ids, []string{"100%.flac", "a%20b.flac", "plain.flac"}) {
		t.Fatalf("ids %q", ids)
	}
	c := e.client(t)
	for id, want := range files {
		if got, err := c.ReadChunk(context.Background(), id, 0); err != nil || string(got) != string(want) {
			t.Errorf("%s: %v", id, err)
		}
	}
}

// TestCatalogRootListingPath: the origin's root listing is asked for "/",
// not "//" (which e.g. http.ServeMux redirects and a proxy may forward as
// another path).
func TestCatalogRootListingPath(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}})
	e := newEnv(t, o, nil)
	catalogOf(t, e)
	for _, p := range o.paths() {
		if strings.HasPrefix(p, "//") {
			t.Fatalf("the origin was asked for %q", p)
		}
	}
}

// TestContentTypeFor: the media types players need.
func TestContentTypeFor(t *testing.T) {
	for id, want := range map[string]string{
		"a.flac": "audio/flac", "a.FLAC": "audio/flac", "b.mp3": "audio/mpeg", "c.opus": "audio/ogg; codecs=opus",
		"d.ogg": "audio/ogg", "e.wav": "audio/wav", "f.m4a": "audio/mp4", "g.webm": "video/webm",
		"h.mkv": "video/x-matroska", "i.mp4": "video/mp4", "dir.flac/readme.txt": "application/octet-stream",
		"noext": "application/octet-stream", "catalog.json": "application/octet-stream",
	} {
		got, media := contentTypeFor(id)
		if got != want || media != (want != "application/octet-stream") {
			t.Errorf("contentTypeFor(%q) = %q %v, want %q", id, got, media, want)
		}
	}
}

// TestCatalogRefreshDoesNotBlockReaders: while one request refreshes a
// stale catalog from a slow origin, other requests keep using the old
// snapshot instead of waiting.
func TestCatalogRefreshDoesNotBlockReaders(t *testing.T) {
	c := &catalog{originPath: "/", file: "catalog.json"}
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseOrigin := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseOrigin) // a failed test must not leave the refresher stuck
	stalled := make(chan struct{}, 1)
	var stall atomic.Bool
	slow := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if stall.Load() {
			select {
			case stalled <- struct{}{}:
			default:
			}
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/") {
			_, err := w.Write([]byte(`[{"name":"a.flac","size":3}]`))
			return err
		}
		return caddyhttp.Error(http.StatusNotFound, nil)
	})
	r := httptest.NewRequest("POST", "/drm/v1/chunk", nil)
	if _, err := c.lookup(r, slow, "a.flac"); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.snap.fetched = time.Now().Add(-catalogTTL)
	c.mu.Unlock()
	stall.Store(true)
	refreshed := make(chan error, 1)
	go func() { _, err := c.list(r, slow); refreshed <- err }()
	select {
	case <-stalled: // the refresher is now stuck in the origin
	case <-time.After(10 * time.Second):
		t.Fatal("the stale catalog's refresh did not ask the origin within 10 s")
	}
	// The lookup runs aside: if it waits for the refresh, the deadline
	// says so instead of the test hanging.
	looked := make(chan error, 1)
	go func() {
		m, err := c.lookup(r, slow, "a.flac")
		if err == nil && m.Size != 3 {
			err = fmt.Errorf("a.flac of %d bytes, want 3", m.Size)
		}
		looked <- err
	}()
	select {
	case err := <-looked:
		if err != nil {
			t.Fatalf("lookup during a refresh: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lookup during a refresh waited for it (10 s)")
	}
	releaseOrigin()
	select {
	case err := <-refreshed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh did not end within 10 s of the origin's release")
	}
}
