package clientproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Found by review: the verified-block cache is keyed by (id, play, index), not by the
// manifest. After the manifest TTL, a re-signed manifest of the SAME bytes
// with another block size makes cached blocks of the old manifest be
// sliced at the new manifest's offsets.
func TestReviewBlockCacheAcrossManifests(t *testing.T) {
	pub := newPublisher(t)
	srv := newDRMServer(t, drmOptions{})
	data := srv.add("a.mp3", 64<<10)
	srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 16<<10))
	clock := newFakeClock()
	cl := newDRMClient(t, srv, func(o *ClientOptions) { o.VerifyManifest = pub.verify; o.PlayTimeout = time.Hour })
	cl.now = clock.Now
	ctx := testCtx(t)
	if _, err := cl.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	// Read the whole medium: blocks 0..3 (16 KiB each) cached for this play.
	n := int64(64 << 10 / drmChunkSize)
	for i := int64(0); i < n; i++ {
		if _, err := cl.ReadChunk(ctx, "a.mp3", i); err != nil {
			t.Fatal(err)
		}
	}
	// The publisher re-signs the same bytes with 4 KiB blocks.
	srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 4<<10))
	clock.Advance(6 * time.Minute)
	for i := int64(0); i < n; i++ {
		got, err := cl.ReadChunk(ctx, "a.mp3", i)
		if err != nil {
			t.Fatal(err)
		}
		if want := data[i*drmChunkSize : (i+1)*drmChunkSize]; !bytes.Equal(got, want) {
			t.Fatalf("chunk %d (offset %d): bytes that are not the medium's at that offset reached the player", i, i*drmChunkSize)
		}
	}
}

// R2: the manifest's size is compared with the catalog only when the
// manifest is fetched. A catalog refreshed later with a shorter size (a
// truncated medium, the chunks consistent with it) is served as complete.
func TestReviewTruncationAfterManifestCached(t *testing.T) {
	pub := newPublisher(t)
	srv := newDRMServer(t, drmOptions{})
	data := srv.add("a.mp3", 8*drmChunkSize)
	srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 4096))
	cl := newDRMClient(t, srv, func(o *ClientOptions) { o.VerifyManifest = pub.verify })
	ctx := testCtx(t)
	if _, err := cl.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ReadChunk(ctx, "a.mp3", 0); err != nil {
		t.Fatal(err)
	}
	// The server now says the medium is 4 chunks long.
	srv.mu.Lock()
	srv.media["a.mp3"] = srv.media["a.mp3"][:4*drmChunkSize]
	srv.catalog[0].Size = 4 * drmChunkSize
	srv.mu.Unlock()
	items, err := cl.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A player would now get Content-Length 4 KiB and these 4 chunks.
	for i := int64(0); i < 4; i++ {
		if _, err := cl.ReadChunk(ctx, "a.mp3", i); err != nil {
			if !errors.Is(err, protocol.ErrManifestMismatch) {
				t.Fatalf("chunk %d refused, but not as a mismatch: %v", i, err)
			}
			return
		}
	}
	t.Fatalf("catalog says %d bytes, manifest %d: all chunks of the truncated medium were served", items[0].Size, len(data))
}

// reconfigure restarts the server with another chunk size: sessions are
// forgotten, the client's next request runs a new handshake.
func (s *drmServer) reconfigure(t *testing.T, chunkSize int) {
	o := s.opts
	srv, err := protocol.NewServer(protocol.ServerConfig{Endpoint: o.Endpoint, Suites: o.Suites,
		Identity: protocol.Identity{Signer: s.identity.Signer, Chain: s.identity.Chain}, ChunkSize: chunkSize,
		Limits: o.Limits, Tickets: newTicketKey(), Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.sessions {
		s.ended[id] = true
	}
	s.sessions = map[protocol.SessionID]*protocol.ServerSession{}
	s.srv = srv
}

// R3: the player-side chunk size (Server.serveMedia) and readVerified's
// (the session's, asked again) can differ: a server that comes back with
// another chunk size mid-request gets verified bytes served at the wrong
// offset.
func TestReviewChunkSizeChange(t *testing.T) {
	for _, verify := range []bool{true, false} {
		t.Run(fmt.Sprint("verify=", verify), func(t *testing.T) {
			pub := newPublisher(t)
			srv := newDRMServer(t, drmOptions{ChunkSize: 2048})
			data := srv.add("a.mp3", 3072)
			srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 4096))
			cl := newDRMClient(t, srv, func(o *ClientOptions) {
				if verify {
					o.VerifyManifest = pub.verify
				}
			})
			if _, err := cl.ChunkSize(testCtx(t)); err != nil { // session with 2 KiB chunks
				t.Fatal(err)
			}
			ps := NewServer(cl, ServerOptions{Prefetch: -1}, nil)
			t.Cleanup(func() { ps.Close() })
			ts := httptest.NewServer(ps)
			t.Cleanup(ts.Close)
			if r, err := http.Get(ts.URL + "/playlist.m3u"); err != nil { // the proxy caches the catalog
				t.Fatal(err)
			} else {
				r.Body.Close()
			}
			srv.reconfigure(t, 1024)
			req, _ := http.NewRequest("GET", ts.URL+"/media/a.mp3", nil)
			req.Header.Set("Range", "bytes=2048-3071")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 206 && !bytes.Equal(body, data[2048:3072]) {
				t.Fatalf("the player got bytes %v for range 2048-3071 (bytes 1024-2047 are %v)", body[:4], data[1024:1028])
			}
		})
	}
}

// R4: no single flight per block: the player's read and the read-ahead of
// chunks in the same missing block each fetch the whole block.
func TestReviewBlockFetchAmplification(t *testing.T) {
	pub := newPublisher(t)
	srv := newDRMServer(t, drmOptions{})
	data := srv.add("a.mp3", 1<<20)
	srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 64<<10))
	cl := newDRMClient(t, srv, func(o *ClientOptions) { o.VerifyManifest = pub.verify })
	ps := NewServer(cl, ServerOptions{Prefetch: 0}, nil)
	t.Cleanup(func() { ps.Close() })
	ts := httptest.NewServer(ps)
	t.Cleanup(ts.Close)
	resp, err := http.Get(ts.URL + "/media/a.mp3")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, data) {
		t.Fatal("body differs")
	}
	if got, chunks := srv.snapshot().requests["chunk"], len(data)/drmChunkSize; got > chunks+chunks/10 {
		t.Fatalf("%d chunk requests for %d chunks: blocks fetched more than once", got, chunks)
	}
}

// R1b: the other direction (4 KiB blocks, then 16 KiB): a cached block
// shorter than the new manifest's block is sliced out of bounds.
func TestReviewBlockCachePanic(t *testing.T) {
	pub := newPublisher(t)
	srv := newDRMServer(t, drmOptions{})
	data := srv.add("a.mp3", 64<<10)
	srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 4<<10))
	clock := newFakeClock()
	cl := newDRMClient(t, srv, func(o *ClientOptions) { o.VerifyManifest = pub.verify; o.PlayTimeout = time.Hour })
	cl.now = clock.Now
	ctx := testCtx(t)
	if _, err := cl.Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ReadChunk(ctx, "a.mp3", 4); err != nil { // caches block 1 = [4K, 8K)
		t.Fatal(err)
	}
	srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, 16<<10))
	clock.Advance(6 * time.Minute)
	got, err := cl.ReadChunk(ctx, "a.mp3", 24) // new block 1 = [16K, 32K)
	t.Logf("%d bytes, %v", len(got), err)
}
