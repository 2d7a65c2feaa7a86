package caddymodule

// Sessions through the handler: key rotation, idle expiry, the bound on
// sessions, close, what does (not) keep a session alive, and the store
// kept across config reloads. (sessions_test.go tests the store itself.)

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

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
	// No waiting for the client's background rekeys: the server serves at
	// most two chunks per epoch (checked below), so seven chunks took four
	// epochs, and each of the three rekeys was recorded (the recorder logs
	// an answer before the client sees it) before a chunk of its epoch was
	// sent. A fourth, early rekey may still be in flight; it is not counted.
	if got := e.rec.count("rekey", http.StatusOK); got < (n-1)/2 {
		t.Errorf("%d rekeys for %d chunks at 2 chunks per epoch, want at least %d", got, n, (n-1)/2)
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

// TestSessionIdleExpiry: a session unused for longer than the idle timeout
// expires on the server (unused for exactly the timeout, it lives), and
// an authenticated request counts as use; the client gets unknown-session
// and transparently opens a new one. The store runs on a fake clock.
func TestSessionIdleExpiry(t *testing.T) {
	want := mediaBytes(2*testChunkSize, 3)
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": want})
	const idle = 10 * time.Minute
	e := newEnv(t, o, func(h *Handler) { h.SessionIdleTimeout = caddy.Duration(idle) })
	clock := e.fakeStoreClock(t)
	c := e.client(t)
	ctx := context.Background()
	first, err := c.ReadChunk(ctx, "a.flac", 0) // the client's session, last used at T
	if err != nil {
		t.Fatal(err)
	}
	raw := e.session(t) // last used at T
	useRaw := func(when string, status int, code string) {
		t.Helper()
		req := raw.NewCatalogRequest()
		resp, body := e.post(t, "catalog", req.Envelope())
		if status != http.StatusOK {
			wantRefusal(t, "raw session "+when, resp, status, code)
			return
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("raw session %s: %s %q", when, resp.Status, resp.Header.Get("Drm-Error"))
		}
		if _, err := req.OpenReply(body); err != nil {
			t.Fatalf("raw session %s: %v", when, err)
		}
	}
	clock.advance(idle)
	useRaw("unused for exactly the idle timeout", http.StatusOK, "") // now last used at T+idle
	clock.advance(time.Nanosecond)
	// The client's session, unused since T, has expired.
	second, err := c.ReadChunk(ctx, "a.flac", 1)
	if err != nil {
		t.Fatalf("after the idle timeout: %v", err)
	}
	if !bytes.Equal(append(first, second...), want) {
		t.Fatal("bytes differ")
	}
	if n := e.rec.count("chunk", http.StatusForbidden); n != 1 {
		t.Errorf("%d chunk requests refused, want 1 (as unknown-session)", n)
	}
	if n := e.rec.count("handshake", http.StatusOK); n != 3 {
		t.Errorf("%d handshakes, want 3: the client's first and second, the raw one", n)
	}
	// The raw session's request at T+idle kept it alive.
	useRaw("used an idle timeout ago", http.StatusOK, "") // last used at T+idle+1ns
	clock.advance(idle + time.Nanosecond)
	useRaw("unused for longer than the idle timeout", http.StatusForbidden, "unknown-session")
}

// TestUnauthenticatedRequestsDoNotKeepSessionsAlive: the session id is in
// the clear header of every request, so a request that fails to
// authenticate must not count as use of the session; otherwise anyone who
// saw an id keeps the session (and its slot under max_sessions) alive
// forever. The store runs on a fake clock.
func TestUnauthenticatedRequestsDoNotKeepSessionsAlive(t *testing.T) {
	const idle = 10 * time.Minute
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}}), func(h *Handler) { h.SessionIdleTimeout = caddy.Duration(idle) })
	clock := e.fakeStoreClock(t)
	s := e.session(t) // last used at T
	id := s.ID()
	// A forgery every quarter of the idle timeout: refused as forged up to
	// T+idle, while the session lives; as unknown after, once the idle
	// timeout (which the forgeries must not reset) has passed.
	for i := 1; i <= 8; i++ {
		clock.advance(idle / 4)
		resp, _ := e.post(t, "catalog", envelopeFor(protocol.MsgCatalog, id[:], 0, 1<<40, randomBytes(32)))
		code := "authentication"
		if i > 4 {
			code = "unknown-session"
		}
		wantRefusal(t, fmt.Sprintf("forged request at T+%v", time.Duration(i)*idle/4), resp, http.StatusForbidden, code)
	}
	resp, _ := e.post(t, "catalog", s.NewCatalogRequest().Envelope())
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("a session unused for %v (idle timeout %v) was kept alive by forged requests", 2*idle, idle)
	}
	wantRefusal(t, "expired session", resp, http.StatusForbidden, "unknown-session")
}

// TestMaxSessions: the store bounds the sessions in use. A handshake
// stores nothing; when the store is full, the first request of a new
// session is refused with 503, Retry-After and busy; a close makes room.
func TestMaxSessions(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": {1}}), func(h *Handler) { h.MaxSessions = 2 })
	s1 := e.session(t)
	e.session(t)
	s3 := e.handshake(t) // a handshake is fine: it stores nothing
	resp, _ := e.post(t, "catalog", s3.NewCatalogRequest().Envelope())
	wantRefusal(t, "first request of a third session", resp, http.StatusServiceUnavailable, "busy")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if n := e.h.sessions.Len(); n != 2 {
		t.Fatalf("%d sessions stored, want 2", n)
	}
	// The client reports the refusal once its retry budget is spent.
	if _, err := e.client(t).Catalog(context.Background()); !errors.Is(err, protocol.ErrBusy) {
		t.Errorf("client on a full server: %v, want a busy error", err)
	}
	// Closing a session makes room for the third.
	req := s1.NewCloseRequest()
	resp, body := e.post(t, "close", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("close: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if _, err := req.OpenReply(body); err != nil {
		t.Fatalf("close reply: %v", err)
	}
	cat := s3.NewCatalogRequest()
	resp, body = e.post(t, "catalog", cat.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the third session after a close: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if _, err := cat.OpenReply(body); err != nil {
		t.Fatal(err)
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
	roots, err := keystore.LoadRoots(pki.RootCert)
	if err != nil {
		t.Fatal(err)
	}
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
