package clientproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestClientRekeyRequired: a chunk refused because its epoch reached the
// server's limit (409 rekey-required) is retried after one rekey on the
// same session; no new handshake.
func TestClientRekeyRequired(t *testing.T) {
	// An age limit on a clock the test moves: the epoch can be taken to
	// its limit without any reply flagged rekey-soon first (a chunk limit
	// small enough for a test flags every reply).
	const age = 1600 // seconds; replies are flagged from 1500 s on
	clock := newFakeClock()
	srv := newDRMServer(t, drmOptions{Limits: protocol.EpochLimits{AgeSeconds: age}, Now: clock.Now})
	want := srv.add("m", 4*drmChunkSize)
	c := newDRMClient(t, srv)
	ctx := testCtx(t)

	if b, err := c.ReadChunk(ctx, "m", 0); err != nil || !bytes.Equal(b, chunkOf(want, 0)) {
		t.Fatalf("chunk 0: %v", err)
	}
	if c.earlyRekey.Load() {
		t.Fatal("a fresh epoch's chunk started a rekey")
	}

	// The epoch reaches its limit: the chunk is refused, the client
	// rekeys and asks again.
	{
		clock.Advance(age * time.Second)
		if b, err := c.ReadChunk(ctx, "m", 1); err != nil || !bytes.Equal(b, chunkOf(want, 1)) {
			t.Fatalf("chunk 1: %d bytes, err %v", len(b), err)
		}
		st := srv.snapshot()
		if st.refusals["rekey-required"] != 1 || st.rekeys != 1 || st.requests["chunk"] != 3 {
			t.Errorf("%d rekey-required refusals, %d rekeys, %d chunk requests; want 1, 1, 3",
				st.refusals["rekey-required"], st.rekeys, st.requests["chunk"])
		}
		if e := st.epochs(protocol.MsgChunk); e[0] != 1 || e[1] != 1 {
			t.Errorf("chunks by epoch %v, want one in epoch 0 and one in epoch 1", e)
		}
	}

	// The limit is reached while an early rekey is in flight: the refused
	// request waits for that rekey instead of starting another.
	{
		gate := make(chan struct{})
		srv.setHook(at("rekey", 2, fault{hold: gate}))
		clock.Advance((age - age/16) * time.Second)
		if _, err := c.ReadChunk(ctx, "m", 2); err != nil { // flagged rekey-soon
			t.Fatal(err)
		}
		srv.await(t, "the early rekey to reach the server", func(st drmStats) bool { return st.requests["rekey"] == 2 })
		clock.Advance(age / 16 * time.Second)
		got := make(chan error, 1)
		go func() {
			b, err := c.ReadChunk(ctx, "m", 3)
			if err == nil && !bytes.Equal(b, chunkOf(want, 3)) {
				err = errors.New("wrong bytes")
			}
			got <- err
		}()
		srv.await(t, "the chunk to be refused", func(st drmStats) bool { return st.refusals["rekey-required"] == 2 })
		close(gate)
		if err := receive(t, "chunk 3", got); err != nil {
			t.Fatalf("chunk 3: %v", err)
		}
		st := srv.snapshot()
		if st.requests["rekey"] != 2 || st.rekeys != 2 {
			t.Errorf("%d rekeys sent, %d completed; want 2 in all", st.requests["rekey"], st.rekeys)
		}
		if e := st.epochs(protocol.MsgChunk); e[1] != 2 || e[2] != 1 {
			t.Errorf("chunks by epoch %v, want two in epoch 1 and one in epoch 2", e)
		}
	}

	eventually(t, "the early rekey to end", func() bool { return !c.earlyRekey.Load() })
	if st := srv.snapshot(); st.handshakes != 1 || len(st.sessionIDs(protocol.MsgChunk)) != 1 {
		t.Errorf("%d handshakes, chunks in %d sessions; want 1 and 1: a rekey is no new session",
			st.handshakes, len(st.sessionIDs(protocol.MsgChunk)))
	}
}

// TestClientEarlyRekey: a reply flagged rekey-soon starts one rekey in the
// background; the player's reads go on meanwhile, and later chunks use the
// new epoch without ever being refused.
func TestClientEarlyRekey(t *testing.T) {
	tests := []struct {
		name    string
		limits  protocol.EpochLimits
		flagged int64         // the first chunk whose reply is flagged
		advance time.Duration // the clock moves this far before it is read
	}{
		// The flag comes when 16 chunks remain (rekeySoonChunks).
		{"chunk limit", protocol.EpochLimits{Chunks: 20}, 3, 0},
		{"byte limit", protocol.EpochLimits{Bytes: 20 * drmChunkSize}, 3, 0},
		// ... or when the epoch is 15/16 of its maximum age.
		{"age limit", protocol.EpochLimits{AgeSeconds: 1600}, 1, 1500 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			srv := newDRMServer(t, drmOptions{Limits: tc.limits, Now: clock.Now})
			want := srv.add("m", 8*drmChunkSize)
			gate := make(chan struct{})
			srv.setHook(at("rekey", 1, fault{hold: gate}))
			c := newDRMClient(t, srv)
			// read fails if the chunk waits for the held rekey.
			read := func(i int64) {
				t.Helper()
				got := make(chan error, 1)
				go func() {
					b, err := c.ReadChunk(testCtx(t), "m", i)
					if err == nil && !bytes.Equal(b, chunkOf(want, i)) {
						err = errors.New("wrong bytes")
					}
					got <- err
				}()
				if err := receive(t, fmt.Sprintf("chunk %d (held up by the rekey?)", i), got); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}

			// The rekey is held at the server, so a rekey started early
			// would still show here.
			for i := range tc.flagged {
				read(i)
				if c.earlyRekey.Load() {
					t.Fatalf("chunk %d, not flagged, started a rekey", i)
				}
			}
			clock.Advance(tc.advance)
			read(tc.flagged)
			if !c.earlyRekey.Load() {
				t.Fatalf("chunk %d was flagged rekey-soon but no rekey started", tc.flagged)
			}
			srv.await(t, "the rekey to reach the server", func(st drmStats) bool { return st.requests["rekey"] == 1 })
			// The rekey is off the player's path: chunks are still served
			// while it waits, and their flags start no second one.
			read(tc.flagged + 1)
			close(gate)
			srv.await(t, "the rekey to complete", func(st drmStats) bool { return st.rekeys == 1 })
			eventually(t, "the client to switch to epoch 1", func() bool {
				return !c.earlyRekey.Load() && c.current().Epoch() == 1
			})
			read(tc.flagged + 2)

			st := srv.snapshot()
			if st.requests["rekey"] != 1 || st.handshakes != 1 || len(st.refusals) != 0 {
				t.Errorf("%d rekeys, %d handshakes, refusals %v; want 1, 1, none", st.requests["rekey"], st.handshakes, st.refusals)
			}
			if e := st.epochs(protocol.MsgChunk); e[0] != int(tc.flagged)+2 || e[1] != 1 {
				t.Errorf("chunks by epoch %v, want %d in epoch 0 and 1 in epoch 1", e, tc.flagged+2)
			}
		})
	}
}

// TestClientRecovers: what the client does with each refusal. Those that
// ask for a rekey or a new session are retried (within maxAttempts), all
// others reach the caller at once; either way the client stays usable.
func TestClientRecovers(t *testing.T) {
	refuse := func(err error) fault { return fault{refuse: err} }
	always := func(endpoint string, f fault) hook {
		return func(ep string, _ int) fault {
			if ep == endpoint {
				return f
			}
			return fault{}
		}
	}
	both := func(a, b hook) hook {
		return func(ep string, n int) fault {
			if f := a(ep, n); f.hold != nil || f.refuse != nil || f.status != 0 || f.forget || f.tamper != nil {
				return f
			}
			return b(ep, n)
		}
	}
	tests := []struct {
		name     string
		catalog  bool // Catalog instead of ReadChunk
		hook     hook
		wantErr  error  // nil: the call succeeds
		wantText string // in the error's message
		// Requests sent by the call.
		handshakes, requests, rekeys int
	}{
		// Retried.
		{name: "rekey-required", hook: at("chunk", 1, refuse(protocol.ErrRekeyRequired)), handshakes: 1, requests: 2, rekeys: 1},
		{name: "epoch-retired", hook: at("chunk", 1, refuse(protocol.ErrEpochRetired)), handshakes: 1, requests: 2, rekeys: 1},
		{name: "unknown-session", hook: at("chunk", 1, refuse(protocol.ErrUnknownSession)), handshakes: 2, requests: 2},
		{name: "session forgotten by the server", hook: at("chunk", 1, fault{forget: true}), handshakes: 2, requests: 2},
		{name: "rekey refused: new session", hook: both(at("chunk", 1, refuse(protocol.ErrRekeyRequired)), at("rekey", 1, refuse(protocol.ErrMalformed))),
			handshakes: 2, requests: 2, rekeys: 1},
		{name: "rekey reply forged: new session", hook: both(at("chunk", 1, refuse(protocol.ErrRekeyRequired)), at("rekey", 1, fault{tamper: flip(-1)})),
			handshakes: 2, requests: 2, rekeys: 1},
		{name: "catalog: rekey-required", catalog: true, hook: at("catalog", 1, refuse(protocol.ErrRekeyRequired)), handshakes: 1, requests: 2, rekeys: 1},
		{name: "catalog: session forgotten", catalog: true, hook: at("catalog", 1, fault{forget: true}), handshakes: 2, requests: 2},

		{name: "server cannot open ours: new session", hook: at("chunk", 1, refuse(protocol.ErrAuthentication)), handshakes: 2, requests: 2},
		{name: "replay: resent", hook: at("chunk", 1, refuse(protocol.ErrReplay)), handshakes: 1, requests: 2},
		{name: "catalog: server cannot open ours", catalog: true, hook: at("catalog", 1, refuse(protocol.ErrAuthentication)), handshakes: 2, requests: 2},

		// Retried at once, but not for ever.
		{name: "rekey-required every time", hook: always("chunk", refuse(protocol.ErrRekeyRequired)), wantErr: protocol.ErrRekeyRequired,
			wantText: "retries", handshakes: 1, requests: maxQuickRetries + 1, rekeys: maxQuickRetries},
		{name: "unknown-session every time", hook: always("chunk", refuse(protocol.ErrUnknownSession)), wantErr: protocol.ErrUnknownSession,
			wantText: "retries", handshakes: maxQuickRetries + 1, requests: maxQuickRetries + 1},

		// Waited out for the budget (requests -1: more than one).
		{name: "origin", hook: always("chunk", refuse(protocol.ErrOrigin)), wantErr: protocol.ErrOrigin, wantText: "gave up after", handshakes: 1, requests: -1},
		{name: "origin timed out", hook: always("chunk", refuse(protocol.ErrOriginTimeout)), wantErr: protocol.ErrOriginTimeout, wantText: "504", handshakes: 1, requests: -1},
		{name: "origin once", hook: at("chunk", 1, refuse(protocol.ErrOrigin)), handshakes: 1, requests: 2},
		{name: "handshake busy", hook: always("handshake", fault{refuse: protocol.ErrBusy}), wantErr: protocol.ErrBusy, wantText: "handshake: 503", handshakes: -1},
		{name: "handshake bare 502", hook: always("handshake", fault{status: 502}), wantText: "handshake: 502 Bad Gateway", handshakes: -1},
		{name: "bare 503 once", hook: at("chunk", 1, fault{status: 503}), handshakes: 1, requests: 2},

		// Not retried.
		{name: "not-found", hook: at("chunk", 1, refuse(protocol.ErrNotFound)), wantErr: protocol.ErrNotFound, wantText: "404", handshakes: 1, requests: 1},
		{name: "out-of-range", hook: at("chunk", 1, refuse(protocol.ErrOutOfRange)), wantErr: protocol.ErrOutOfRange, wantText: "416", handshakes: 1, requests: 1},
		{name: "malformed", hook: at("chunk", 1, refuse(protocol.ErrMalformed)), wantErr: protocol.ErrMalformed, wantText: "400", handshakes: 1, requests: 1},
		{name: "wrong-message", hook: at("chunk", 1, refuse(protocol.ErrWrongMessage)), wantErr: protocol.ErrWrongMessage, handshakes: 1, requests: 1},
		{name: "forbidden", hook: at("chunk", 1, refuse(protocol.ErrForbidden)), wantErr: protocol.ErrForbidden, handshakes: 1, requests: 1},
		{name: "internal (no code)", hook: at("chunk", 1, refuse(errors.New("disk on fire"))), wantText: "chunk: 500 Internal Server Error: unknown error code: internal: internal error", handshakes: 1, requests: 1},
		{name: "bare 500", hook: at("chunk", 1, fault{status: 500}), wantText: "chunk: 500 Internal Server Error: no Drm-Error header", handshakes: 1, requests: 1},
		{name: "bare 409", hook: at("chunk", 1, fault{status: 409}), wantText: "chunk: 409 Conflict: no Drm-Error header", handshakes: 1, requests: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{})
			want := srv.add("m", 3*drmChunkSize)
			srv.setHook(tc.hook)
			c := newDRMClient(t, srv)
			ctx := testCtx(t)
			endpoint := "chunk"
			call := func() error {
				b, err := c.ReadChunk(ctx, "m", 1)
				if err == nil && !bytes.Equal(b, chunkOf(want, 1)) {
					return errors.New("wrong bytes")
				}
				if err != nil && b != nil {
					return fmt.Errorf("%d bytes returned with the error %w", len(b), err)
				}
				return err
			}
			if tc.catalog {
				endpoint = "catalog"
				call = func() error {
					items, err := c.Catalog(ctx)
					if err == nil && len(items) != 1 {
						return fmt.Errorf("catalog of %d items", len(items))
					}
					return err
				}
			}

			err := call()
			switch {
			case tc.wantErr == nil && tc.wantText == "":
				if err != nil {
					t.Fatalf("err %v, want success", err)
				}
			case err == nil:
				t.Fatalf("succeeded, want an error")
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("err %v, want %v", err, tc.wantErr)
			case !strings.Contains(err.Error(), tc.wantText):
				t.Errorf("err %q, want it to contain %q", err, tc.wantText)
			}
			st := srv.snapshot()
			count := func(got, want int) bool { return got == want || want == -1 && got > 1 }
			if !count(st.requests["handshake"], tc.handshakes) || !count(st.requests[endpoint], tc.requests) || st.requests["rekey"] != tc.rekeys {
				t.Errorf("%d handshakes, %d %s requests, %d rekeys sent; want %d, %d, %d (-1: more than one)", st.requests["handshake"],
					st.requests[endpoint], endpoint, st.requests["rekey"], tc.handshakes, tc.requests, tc.rekeys)
			}

			srv.setHook(nil)
			if err := call(); err != nil {
				t.Errorf("next call: %v", err)
			}
		})
	}
}

// TestClientForgedReplies: a reply changed on the way — one flipped bit
// anywhere, a byte more or less — is refused, no byte of it is returned,
// and it is not asked for again. The session survives: the keys are not
// at fault.
func TestClientForgedReplies(t *testing.T) {
	const h = protocol.ReplyHeaderSize
	tests := []struct {
		name   string
		tamper func([]byte) []byte
		want   error  // the error, or
		code   string // its protocol.ErrorCode
	}{
		{"version", flip(0), nil, "version"},
		{"type", flip(1), protocol.ErrUnexpectedReply, ""},
		{"final flag", flip(2), protocol.ErrAuthentication, ""},
		{"rekey-soon flag", xorByte(2, 2), protocol.ErrAuthentication, ""},
		{"epoch", flip(6), protocol.ErrUnexpectedReply, ""},
		{"sequence number", flip(14), protocol.ErrUnexpectedReply, ""},
		{"chunk index", flip(22), protocol.ErrAuthentication, ""},
		{"media size", flip(30), protocol.ErrAuthentication, ""},
		{"remaining chunks", flip(34), protocol.ErrAuthentication, ""},
		{"first ciphertext byte", flip(h), protocol.ErrAuthentication, ""},
		{"a middle byte", flip(h + drmChunkSize/2), protocol.ErrAuthentication, ""},
		{"last byte (tag)", flip(-1), protocol.ErrAuthentication, ""},
		{"a byte short", func(b []byte) []byte { return b[:len(b)-1] }, protocol.ErrAuthentication, ""},
		{"a byte more", func(b []byte) []byte { return append(b, 0) }, protocol.ErrAuthentication, ""},
		{"header only", func(b []byte) []byte { return b[:h] }, protocol.ErrAuthentication, ""},
		{"shorter than a header", func(b []byte) []byte { return b[:h-1] }, protocol.ErrMalformed, ""},
		{"empty", func(b []byte) []byte { return b[:0] }, protocol.ErrMalformed, ""},
	}
	srv := newDRMServer(t, drmOptions{})
	want := srv.add("m", 3*drmChunkSize)
	c := newDRMClient(t, srv)
	ctx := testCtx(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := srv.snapshot().requests["chunk"]
			srv.setHook(at("chunk", n+1, fault{tamper: tc.tamper}))
			b, err := c.ReadChunk(ctx, "m", 1)
			if b != nil {
				t.Errorf("%d bytes returned from a forged reply", len(b))
			}
			switch {
			case err == nil:
				t.Fatal("forged reply accepted")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("err %v, want %v", err, tc.want)
			case tc.code != "" && protocol.ErrorCode(err) != tc.code:
				t.Errorf("err %v, want code %q", err, tc.code)
			}
			if d := srv.snapshot().requests["chunk"] - n; d != 1 {
				t.Errorf("%d requests for the chunk, want 1 (no retry)", d)
			}
			if b, err := c.ReadChunk(ctx, "m", 1); err != nil || !bytes.Equal(b, chunkOf(want, 1)) {
				t.Errorf("next read: %d bytes, err %v", len(b), err)
			}
		})
	}

	t.Run("catalog", func(t *testing.T) {
		n := srv.snapshot().requests["catalog"]
		srv.setHook(at("catalog", n+1, fault{tamper: flip(-1)}))
		items, err := c.Catalog(ctx)
		if !errors.Is(err, protocol.ErrAuthentication) || items != nil {
			t.Errorf("Catalog = %v, %v; want ErrAuthentication", items, err)
		}
		if d := srv.snapshot().requests["catalog"] - n; d != 1 {
			t.Errorf("%d catalog requests, want 1", d)
		}
	})

	if st := srv.snapshot(); st.handshakes != 1 {
		t.Errorf("%d handshakes, want 1", st.handshakes)
	}
}

func TestClientClose(t *testing.T) {
	srv := newDRMServer(t, drmOptions{})
	want := srv.add("m", 10)
	c := newDRMClient(t, srv)
	ctx := testCtx(t)
	read := func() {
		t.Helper()
		if b, err := c.ReadChunk(ctx, "m", 0); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("ReadChunk: %d bytes, err %v", len(b), err)
		}
	}
	wantCounts := func(what string, handshakes, closeRequests, sessions int) {
		t.Helper()
		st := srv.snapshot()
		if st.handshakes != handshakes || st.requests["close"] != closeRequests || st.sessions != sessions {
			t.Errorf("%s: %d handshakes, %d close requests, %d live sessions; want %d, %d, %d",
				what, st.handshakes, st.requests["close"], st.sessions, handshakes, closeRequests, sessions)
		}
	}

	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close without a session: %v", err)
	}
	wantCounts("Close without a session", 0, 0, 0)

	read()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantCounts("Close", 1, 1, 0)
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantCounts("second Close", 1, 1, 0)

	read()
	wantCounts("read after Close", 2, 1, 1)
	if ids := srv.snapshot().sessionIDs(protocol.MsgChunk); len(ids) != 2 {
		t.Errorf("chunks read in %d sessions, want 2", len(ids))
	}

	// Closing a session the server has forgotten reports it, and the
	// client forgets it too.
	srv.forgetAll()
	if err := c.Close(ctx); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Errorf("Close of a forgotten session: %v, want ErrUnknownSession", err)
	}
	wantCounts("Close of a forgotten session", 2, 2, 0)
	if c.current() != nil {
		t.Error("client kept the forgotten session")
	}
	read()
	wantCounts("read after that", 3, 2, 1)

	// A forged answer to the close is reported; the session is gone
	// anyway.
	srv.setHook(at("close", 3, fault{tamper: flip(-1)}))
	if err := c.Close(ctx); !errors.Is(err, protocol.ErrAuthentication) {
		t.Errorf("Close with a forged answer: %v, want ErrAuthentication", err)
	}
	if c.current() != nil {
		t.Error("client kept the closed session")
	}
	wantCounts("Close with a forged answer", 3, 3, 0)
}

func TestClientCanceledRead(t *testing.T) {
	srv := newDRMServer(t, drmOptions{})
	want := srv.add("m", 10)
	gate := make(chan struct{})
	defer close(gate)
	srv.setHook(at("chunk", 1, fault{hold: gate}))
	c := newDRMClient(t, srv)

	ctx, cancel := context.WithCancel(testCtx(t))
	got := make(chan error, 1)
	go func() {
		b, err := c.ReadChunk(ctx, "m", 0)
		if b != nil {
			err = fmt.Errorf("%d bytes with err %w", len(b), err)
		}
		got <- err
	}()
	srv.await(t, "the chunk request", func(st drmStats) bool { return st.requests["chunk"] == 1 })
	cancel()
	if err := receive(t, "the canceled read", got); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v, want context.Canceled", err)
	}
	if b, err := c.ReadChunk(testCtx(t), "m", 0); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("next read: %d bytes, err %v", len(b), err)
	}
	if st := srv.snapshot(); st.handshakes != 1 {
		t.Errorf("%d handshakes, want 1", st.handshakes)
	}
}

// TestClientConcurrentReads: many goroutines read chunks through one fresh
// client while the server's small epoch limit forces rekey after rekey.
// Run it with -race.
func TestClientConcurrentReads(t *testing.T) {
	const (
		readers = 8
		reads   = 40 // per reader
		limit   = 32 // chunks per epoch; rekey-soon from the 16th on
		media   = 3
		chunks  = 10 // per medium
	)
	srv := newDRMServer(t, drmOptions{Limits: protocol.EpochLimits{Chunks: limit}})
	data := make([][]byte, media)
	for m := range media {
		data[m] = srv.add("m"+strconv.Itoa(m), chunks*drmChunkSize-m)
	}
	c := newDRMClient(t, srv)
	ctx := testCtx(t)

	start := make(chan struct{})
	errs := make(chan error, readers*reads)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			<-start
			for range reads {
				m, i := rng.IntN(media), int64(rng.IntN(chunks))
				b, err := c.ReadChunk(ctx, "m"+strconv.Itoa(m), i)
				if err == nil && !bytes.Equal(b, chunkOf(data[m], i)) {
					err = fmt.Errorf("chunk %d of m%d: wrong bytes", i, m)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	receive(t, "the readers to finish", finished)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "the last early rekey to end", func() bool { return !c.earlyRekey.Load() })

	st := srv.snapshot()
	byEpoch := st.epochs(protocol.MsgChunk)
	served := 0
	for _, n := range byEpoch {
		served += n
	}
	if served != readers*reads {
		t.Errorf("%d chunks served, want %d", served, readers*reads)
	}
	// Each epoch served at most limit chunks, so there were at least this
	// many rekeys; all in one session.
	if least := (readers*reads+limit-1)/limit - 1; st.rekeys < least || len(byEpoch) < least+1 {
		t.Errorf("%d rekeys, chunks in %d epochs; want at least %d rekeys", st.rekeys, len(byEpoch), least)
	}
	if st.handshakes != 1 || len(st.sessionIDs(protocol.MsgChunk)) != 1 {
		t.Errorf("%d handshakes, chunks in %d sessions; want one session throughout", st.handshakes, len(st.sessionIDs(protocol.MsgChunk)))
	}
	t.Logf("%d rekeys; refusals %v", st.rekeys, st.refusals)
}

// TestClientWaitHonoursContext: a call that waits for another call's
// handshake or rekey gives up as soon as its own context ends, and does not
// spoil the session for the calls that go on.
func TestClientWaitHonoursContext(t *testing.T) {
	tests := []struct {
		name   string
		limits protocol.EpochLimits
		held   string // the endpoint held at the server
		warmup int64  // chunks read before: the last is flagged rekey-soon
		hook   hook   // for the waiting call's requests
	}{
		{name: "handshake in flight", held: "handshake"},
		// Chunk 3's reply is flagged: a rekey starts in the background;
		// the next chunk is refused and must wait for that rekey.
		{name: "rekey in flight", limits: protocol.EpochLimits{Chunks: 20}, held: "rekey", warmup: 4,
			hook: at("chunk", 5, fault{refuse: protocol.ErrRekeyRequired})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{Limits: tc.limits})
			want := srv.add("m", 8*drmChunkSize)
			gate := make(chan struct{})
			held := at(tc.held, 1, fault{hold: gate})
			srv.setHook(func(ep string, n int) fault {
				if f := held(ep, n); f.hold != nil {
					return f
				}
				if tc.hook != nil {
					return tc.hook(ep, n)
				}
				return fault{}
			})
			// The transport tells when the waiting call has the server's
			// refusal in hand: from then on it can only go on to wait.
			refused := make(chan struct{}, 1)
			c := newDRMClient(t, srv, func(o *ClientOptions) {
				o.HTTPClient = NewHTTPClient(nil)
				o.HTTPClient.Transport = &watchTransport{base: o.HTTPClient.Transport, seen: func(resp *http.Response) {
					if resp.Header.Get("Drm-Error") != "" {
						select {
						case refused <- struct{}{}:
						default:
						}
					}
				}}
			})

			// Another call starts the handshake or the rekey, which the
			// server holds.
			first := make(chan error, 1)
			if tc.warmup == 0 {
				go func() { _, err := c.ReadChunk(testCtx(t), "m", 0); first <- err }()
			} else {
				readMedium(t, c, "m", int(tc.warmup)*drmChunkSize)
				first <- nil
			}
			srv.await(t, tc.held+" to reach the server", func(st drmStats) bool { return st.requests[tc.held] == 1 })

			ctx, cancel := context.WithCancel(testCtx(t))
			got := make(chan error, 1)
			go func() {
				b, err := c.ReadChunk(ctx, "m", tc.warmup)
				if b != nil {
					err = fmt.Errorf("%d bytes with err %w", len(b), err)
				}
				got <- err
			}()
			if tc.hook != nil {
				receive(t, "the refusal to reach the client", refused)
			}
			cancel()
			if err := receive(t, "the canceled call to return", got); !errors.Is(err, context.Canceled) {
				t.Errorf("canceled call: %v, want context.Canceled", err)
			}

			close(gate)
			if err := receive(t, "the first call", first); err != nil {
				t.Fatalf("first call: %v", err)
			}
			eventually(t, "the rekey to end", func() bool { return !c.earlyRekey.Load() })
			if b, err := c.ReadChunk(testCtx(t), "m", tc.warmup+1); err != nil || !bytes.Equal(b, chunkOf(want, tc.warmup+1)) {
				t.Fatalf("next call: %d bytes, err %v", len(b), err)
			}
			if st := srv.snapshot(); st.handshakes != 1 {
				t.Errorf("%d handshakes, want 1: the session survives a caller giving up", st.handshakes)
			}
		})
	}
}

// watchTransport shows every response to seen before the client gets it.
type watchTransport struct {
	base http.RoundTripper
	seen func(*http.Response)
}

func (w *watchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(req)
	if err == nil {
		w.seen(resp)
	}
	return resp, err
}
