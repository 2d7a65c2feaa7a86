package clientproxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// catalogFixture publishes items whose ids and titles need escaping.
func catalogFixture() (*fakeSource, map[string][]byte) {
	src := newFakeSource(testChunkSize)
	data := map[string][]byte{
		"plain.mp3":           src.add("plain.mp3", "Plain", "audio/mpeg", 1500, 61.5),
		"dir/with space.flac": src.add("dir/with space.flac", "<script>alert(1)</script>", "audio/flac", 10, 0),
		"odd/100%?#.ogg":      src.add("odd/100%?#.ogg", "Two\nLines", "audio/ogg", 2*testChunkSize+1, 3600),
	}
	return src, data
}

func TestIndexPage(t *testing.T) {
	src, _ := catalogFixture()
	_, ts, _ := startServer(t, src, ServerOptions{})
	resp, body, err := fetch(t, ts, "GET", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, want := range []string{
		`<a href="/playlist.m3u">`,
		`<audio controls preload="none" src="/media/plain.mp3">`,
		`<audio controls preload="none" src="/media/dir/with%20space.flac">`,
		`<audio controls preload="none" src="/media/odd/100%25%3F%23.ogg">`,
		"Plain", "&lt;script&gt;alert(1)&lt;/script&gt;", "Two\nLines",
		"audio/mpeg", "audio/flac", "audio/ogg",
		"1.5 KiB (1500 bytes)", "10 B",
		"1:02", "1:00:00",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("page contains an unescaped <script> title")
	}
	if n := strings.Count(page, "<audio "); n != 3 {
		t.Errorf("page has %d players, want 3", n)
	}
}

func TestPlaylist(t *testing.T) {
	src, data := catalogFixture()
	_, ts, _ := startServer(t, src, ServerOptions{})
	resp, body, err := fetch(t, ts, "GET", "/playlist.m3u", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "audio/x-mpegurl" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	host := strings.TrimPrefix(ts.URL, "http://")
	want := "#EXTM3U\n" +
		"#EXTINF:62,Plain\nhttp://" + host + "/media/plain.mp3\n" +
		"#EXTINF:-1,<script>alert(1)</script>\nhttp://" + host + "/media/dir/with%20space.flac\n" +
		"#EXTINF:3600,Two Lines\nhttp://" + host + "/media/odd/100%25%3F%23.ogg\n"
	if string(body) != want {
		t.Fatalf("playlist:\n%s\nwant:\n%s", body, want)
	}

	// Every entry must play back the right medium through its escaped URL.
	ids := []string{"plain.mp3", "dir/with space.flac", "odd/100%?#.ogg"}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	for i, id := range ids {
		line := lines[2+2*i]
		path, ok := strings.CutPrefix(line, ts.URL)
		if !ok {
			t.Fatalf("entry %q is not on the server %s", line, ts.URL)
		}
		resp, got, err := fetch(t, ts, "GET", path, nil)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, data[id]) {
			t.Errorf("%s: status %d, err %v, body matches %q: %v", line, resp.StatusCode, err, id, bytes.Equal(got, data[id]))
		}
	}
}

func TestCatalogCache(t *testing.T) {
	src := newFakeSource(testChunkSize)
	src.add("a", "A", "audio/mpeg", 10, 0)
	c := newCatalogCache(src, 30*time.Second)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }

	steps := []struct {
		name      string
		advance   time.Duration
		lookup    string // "" means list
		wantFound bool
		wantCalls int // Catalog calls so far
	}{
		{"first list fetches", 0, "", true, 1},
		{"fresh list is cached", 10 * time.Second, "", true, 1},
		{"fresh hit is cached", 0, "a", true, 1},
		{"miss refreshes", 0, "b", true, 2},
		{"unknown id still 404 after refresh", 0, "zzz", false, 3},
		{"expired list refreshes", 31 * time.Second, "", true, 4},
		{"expired hit refreshes", 31 * time.Second, "a", true, 5},
	}
	for i, st := range steps {
		if i == 3 {
			src.add("b", "B", "audio/mpeg", 10, 0) // published after the first fetch
		}
		now = now.Add(st.advance)
		found := true
		var err error
		if st.lookup == "" {
			_, err = c.list(t.Context())
		} else {
			_, found, err = c.lookup(t.Context(), st.lookup)
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if found != st.wantFound || src.catalogCalls != st.wantCalls {
			t.Errorf("%s: found %v after %d catalog calls, want %v after %d",
				st.name, found, src.catalogCalls, st.wantFound, st.wantCalls)
		}
	}
}

func TestFirstServedOffset(t *testing.T) {
	const size = 3007
	tests := []struct {
		method, rng, ifRange string
		wantOff              int64
		wantOK               bool
	}{
		{"GET", "", "", 0, true},
		{"HEAD", "bytes=100-", "", 0, false},
		{"GET", "bytes=100-", "", 100, true},
		{"GET", "bytes=100-", `"etag"`, 0, true},
		{"GET", "bytes=-10", "", size - 10, true},
		{"GET", "bytes=-0", "", 0, false},
		{"GET", "bytes=5000-,2100-2200", "", 2100, true},
		{"GET", " bytes=1-2", "", 0, false},
		{"GET", "bytes= , 7 - 9", "", 7, true},
		{"GET", "bytes=5000-", "", 0, false},
		{"GET", "bytes=9-3", "", 0, false},
		{"GET", "bytes=--5", "", 0, false},
		{"GET", "items=1-2", "", 0, false},
		{"GET", "bytes=2000-,1000-", "", 0, true}, // overlapping past size: ignored
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "http://127.0.0.1/media/m", nil)
		if tc.rng != "" {
			r.Header.Set("Range", tc.rng)
		}
		if tc.ifRange != "" {
			r.Header.Set("If-Range", tc.ifRange)
		}
		off, ok := firstServedOffset(r, size)
		if off != tc.wantOff || ok != tc.wantOK {
			t.Errorf("%s Range %q If-Range %q: (%d, %v), want (%d, %v)",
				tc.method, tc.rng, tc.ifRange, off, ok, tc.wantOff, tc.wantOK)
		}
	}
	if _, ok := firstServedOffset(httptest.NewRequest(http.MethodGet, "/", nil), 0); ok {
		t.Error("empty medium: a body read was predicted")
	}
}
