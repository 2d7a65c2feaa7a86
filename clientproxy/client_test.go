package clientproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// testCtx is the context of a test's calls to the client: canceled when
// the test ends or after testDeadline, so that a client that waits or
// retries for ever fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// readMedium reads every chunk of id through c and returns them joined.
func readMedium(t *testing.T, c *Client, id string, size int) []byte {
	t.Helper()
	ctx := testCtx(t)
	var out []byte
	for i := range protocol.ChunkCount(uint64(size), drmChunkSize) {
		b, err := c.ReadChunk(ctx, id, int64(i))
		if err != nil {
			t.Fatalf("%s chunk %d: %v", id, i, err)
		}
		out = append(out, b...)
	}
	return out
}

// chunkOf is chunk i of data, as the server cuts it.
func chunkOf(data []byte, i int64) []byte {
	start, end, _ := protocol.ChunkSpan(uint64(i), uint64(len(data)), drmChunkSize)
	return data[start:end]
}

func TestNewClient(t *testing.T) {
	srv := newDRMServer(t, drmOptions{})
	tests := []struct {
		url, serverName string
		noRoots         bool
		wantBase        string // "" when NewClient must fail
		wantName        string
	}{
		{url: "http://drm.example/drm", wantBase: "http://drm.example/drm/v1/", wantName: "drm.example"},
		{url: "https://drm.example:8443/drm/", wantBase: "https://drm.example:8443/drm/v1/", wantName: "drm.example"},
		{url: "http://[::1]:8080", wantBase: "http://[::1]:8080/v1/", wantName: "::1"},
		{url: "http://drm.example/drm", serverName: "other.example", wantBase: "http://drm.example/drm/v1/", wantName: "other.example"},
		{url: "http://drm.example/drm", noRoots: true},
		{url: ""},
		{url: "drm.example/drm"},
		{url: "ftp://drm.example/drm"},
		{url: "http:///drm"},
		{url: "http://drm.example/%zz"},
	}
	for _, tc := range tests {
		opts := ClientOptions{ServerURL: tc.url, ServerName: tc.serverName, Roots: srv.Roots}
		if tc.noRoots {
			opts.Roots = nil
		}
		c, err := NewClient(opts)
		if tc.wantBase == "" {
			if err == nil {
				t.Errorf("NewClient(%q, roots %v) succeeded, want an error", tc.url, !tc.noRoots)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewClient(%q): %v", tc.url, err)
			continue
		}
		if c.base != tc.wantBase || c.opts.ServerName != tc.wantName {
			t.Errorf("NewClient(%q): endpoints under %q, server name %q; want %q, %q", tc.url, c.base, c.opts.ServerName, tc.wantBase, tc.wantName)
		}
	}

	// With or without a trailing slash, the client finds the endpoints,
	// and it sends nothing until it is used.
	for _, url := range []string{srv.URL, srv.URL + "/"} {
		c := newDRMClient(t, srv, func(o *ClientOptions) { o.ServerURL = url })
		before := srv.snapshot().requests["handshake"]
		if _, err := c.ChunkSize(testCtx(t)); err != nil {
			t.Errorf("server URL %q: %v", url, err)
		}
		if d := srv.snapshot().requests["handshake"] - before; d != 1 {
			t.Errorf("server URL %q: %d handshakes, want 1", url, d)
		}
	}
	if st := srv.snapshot(); len(st.requests) != 1 {
		t.Errorf("requests %v, want handshakes only", st.requests)
	}
}

// TestClientReadsMedia reads media of sizes around the chunk size through
// one client: one handshake, one session for every chunk, the chunk after
// the last refused by the server.
func TestClientReadsMedia(t *testing.T) {
	const cs = drmChunkSize
	srv := newDRMServer(t, drmOptions{})
	c := newDRMClient(t, srv)
	ctx := testCtx(t)

	if n, err := c.ChunkSize(ctx); err != nil || n != cs {
		t.Fatalf("ChunkSize = %d, %v; want %d", n, err, cs)
	}
	if st := srv.snapshot(); st.handshakes != 1 || len(st.accepted) != 0 {
		t.Fatalf("ChunkSize: %d handshakes, %d requests; want the handshake only", st.handshakes, len(st.accepted))
	}

	for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 2 * cs, 3*cs + 7} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			id := fmt.Sprintf("album/track %d.flac", size)
			want := srv.add(id, size)
			if got := readMedium(t, c, id, size); !bytes.Equal(got, want) {
				t.Fatalf("%d bytes read, differing from the %d-byte medium", len(got), len(want))
			}
			n := int64(protocol.ChunkCount(uint64(size), cs))
			before := srv.snapshot().requests["chunk"]
			b, err := c.ReadChunk(ctx, id, n)
			if !errors.Is(err, protocol.ErrOutOfRange) || b != nil {
				t.Errorf("chunk %d of %d: %d bytes, err %v; want ErrOutOfRange", n, n, len(b), err)
			}
			if d := srv.snapshot().requests["chunk"] - before; d != 1 {
				t.Errorf("chunk past the end: %d requests, want 1", d)
			}
		})
	}

	srv.add("m", 10)
	before := srv.snapshot().requests["chunk"]
	if b, err := c.ReadChunk(ctx, "m", -1); err == nil || b != nil {
		t.Errorf("chunk -1: %d bytes, err %v; want an error", len(b), err)
	}
	if d := srv.snapshot().requests["chunk"] - before; d != 0 {
		t.Errorf("chunk -1 sent %d requests, want none", d)
	}
	if b, err := c.ReadChunk(ctx, "missing", 0); !errors.Is(err, protocol.ErrNotFound) || b != nil {
		t.Errorf("missing medium: %d bytes, err %v; want ErrNotFound", len(b), err)
	}
	if n, err := c.ChunkSize(ctx); err != nil || n != cs {
		t.Errorf("ChunkSize again = %d, %v", n, err)
	}

	st := srv.snapshot()
	if st.handshakes != 1 || st.requests["handshake"] != 1 {
		t.Errorf("%d handshakes (%d sent), want 1", st.handshakes, st.requests["handshake"])
	}
	if ids := st.sessionIDs(protocol.MsgChunk); len(ids) != 1 {
		t.Errorf("chunks requested in %d sessions, want 1", len(ids))
	}
	if e := st.epochs(protocol.MsgChunk); len(e) != 1 || e[0] == 0 {
		t.Errorf("chunks by epoch %v, want all in epoch 0", e)
	}
}

func TestClientSuites(t *testing.T) {
	for _, suite := range protocol.DefaultSuites() {
		t.Run(suite.Name(), func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{})
			want := srv.add("m", 2*drmChunkSize+1)
			c := newDRMClient(t, srv, func(o *ClientOptions) { o.Suites = []protocol.Suite{suite} })
			if items, err := c.Catalog(testCtx(t)); err != nil || len(items) != 1 {
				t.Fatalf("Catalog = %v, %v", items, err)
			}
			if got := readMedium(t, c, "m", len(want)); !bytes.Equal(got, want) {
				t.Error("medium read back differs")
			}
			if st := srv.snapshot(); !slices.Equal(st.suites, []string{suite.Name()}) {
				t.Errorf("sessions used suites %v, want [%s]", st.suites, suite)
			}
		})
	}

	t.Run("no common suite", func(t *testing.T) {
		suites, err := protocol.ParseSuites([]string{"X25519_AES128_GCM_SHA256"})
		if err != nil {
			t.Fatal(err)
		}
		srv := newDRMServer(t, drmOptions{Suites: suites})
		c := newDRMClient(t, srv, func(o *ClientOptions) {
			o.Suites, err = protocol.ParseSuites([]string{"P256_AES256_GCM_SHA384"})
		})
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.ChunkSize(testCtx(t))
		if code := protocol.ErrorCode(err); code != "no-common-suite" || n != 0 {
			t.Errorf("ChunkSize = %d, %v (code %q); want code no-common-suite", n, err, code)
		}
		if st := srv.snapshot(); st.requests["handshake"] != 1 {
			t.Errorf("%d handshakes sent, want 1", st.requests["handshake"])
		}
	})
}

// TestClientCatalog: the catalog is returned as the server sent it, and
// the sizes it announces bind the chunks read afterwards.
func TestClientCatalog(t *testing.T) {
	const size = 2*drmChunkSize + 5
	tests := []struct {
		name        string
		catalogSize int64 // what the catalog announces; the medium has size bytes
		fetch       bool  // Catalog is called before the chunk is read
		wantErr     bool
	}{
		{"catalog agrees", size, true, false},
		{"catalog one byte larger", size + 1, true, true},
		{"catalog one byte smaller", size - 1, true, true},
		{"catalog a chunk larger", size + drmChunkSize, true, true},
		{"catalog says empty", 0, true, true},
		{"no catalog fetched", size + 1, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{})
			want := srv.add("m", size)
			srv.add("other", 3)
			srv.setCatalogSize("m", tc.catalogSize)
			c := newDRMClient(t, srv)
			ctx := testCtx(t)
			if tc.fetch {
				items, err := c.Catalog(ctx)
				if err != nil {
					t.Fatal(err)
				}
				wantItems := []protocol.MediaInfo{
					{ID: "m", Title: "M", Size: tc.catalogSize, ContentType: "audio/mpeg"},
					{ID: "other", Title: "OTHER", Size: 3, ContentType: "audio/mpeg"},
				}
				if !slices.Equal(items, wantItems) {
					t.Fatalf("Catalog = %+v, want %+v", items, wantItems)
				}
			}
			// Chunk 0 is whole whatever the size: only the media size in
			// its header can disagree with the catalog.
			b, err := c.ReadChunk(ctx, "m", 0)
			if !tc.wantErr {
				if err != nil || !bytes.Equal(b, chunkOf(want, 0)) {
					t.Fatalf("chunk 0: %d bytes, err %v; want the chunk", len(b), err)
				}
				return
			}
			if !errors.Is(err, protocol.ErrUnexpectedReply) || b != nil {
				t.Fatalf("chunk 0: %d bytes, err %v; want ErrUnexpectedReply and no data", len(b), err)
			}
			if n := srv.snapshot().requests["chunk"]; n != 1 {
				t.Errorf("refused chunk requested %d times, want 1", n)
			}
			// The size is the latest catalog's: once it agrees, so does the
			// client.
			srv.setCatalogSize("m", size)
			if _, err := c.Catalog(ctx); err != nil {
				t.Fatal(err)
			}
			if b, err := c.ReadChunk(ctx, "m", 0); err != nil || !bytes.Equal(b, chunkOf(want, 0)) {
				t.Errorf("after the catalog was corrected: %d bytes, err %v", len(b), err)
			}
		})
	}
}
