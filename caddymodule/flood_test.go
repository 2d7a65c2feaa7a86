package caddymodule

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/keystore"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (any of 127.0.0.0/8 is this host).
func clientFrom(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}, Timeout: 30 * time.Second}
}

// TestHandshakeFlood: 2,000 copies of one ClientHello from 127.0.0.2 leave
// no session in the store (a handshake stores nothing until its session's
// first request), are throttled once the address's budget of unused
// handshakes is spent, and do not stop a listener at 127.0.0.1, whose
// sessions are used and so never run into the budget.
func TestHandshakeFlood(t *testing.T) {
	media := mediaBytes(5*testChunkSize+3, 4)
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": media}), func(h *Handler) { h.UnusedHandshakesPerAddress = 64 })
	hello := handshakeBody(t, e)
	flooder := clientFrom("127.0.0.2")
	ok, throttled := 0, 0
	for range 2000 {
		resp, err := flooder.Post(e.url+"/v1/handshake", "application/json", bytes.NewReader(hello))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("a throttled handshake without Retry-After")
			}
			throttled++
		default:
			t.Fatalf("replayed hello: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
		}
	}
	// The budget refills at one a second: a slow machine may earn a few.
	if ok < 64 || ok > 64+10 || throttled != 2000-ok {
		t.Errorf("%d handshakes answered, %d throttled; want 64 (plus a few refilled) and the rest", ok, throttled)
	}
	if n := e.h.sessions.Len(); n != 0 {
		t.Fatalf("%d sessions stored after the flood, want 0", n)
	}
	// A real listener, on another address, plays; and one address's many
	// listeners, each using its session, are not throttled: 100 sessions
	// from 127.0.0.1, more than its budget.
	c := e.client(t)
	if _, err := c.Catalog(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, "a.flac", len(media)); !bytes.Equal(got, media) {
		t.Fatal("the listener's bytes differ")
	}
	for i := range 100 {
		e.session(t)
		if t.Failed() {
			t.Fatalf("session %d from one address", i)
		}
	}
	if n := e.h.sessions.Len(); n != 101 {
		t.Fatalf("%d sessions stored, want the 101 in use", n)
	}
}

// TestSessionsBoundToTheirEndpoint: two drm endpoints with the same prefix
// and identity (the development PKI's default case) share nothing: a
// session made at one, used or not, is refused at the other.
func TestSessionsBoundToTheirEndpoint(t *testing.T) {
	pki := newPKI(t)
	origin := newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(10, 1)})
	same := func(endpoint string) func(*Handler) {
		return func(h *Handler) {
			h.Endpoint, h.Prefix, h.Certificate, h.Key = endpoint, "/drm-shared", pki.ServerCert, pki.ServerKey
		}
	}
	a := newEnv(t, origin, same("http://free.test/drm"))
	b := newEnv(t, origin, same("http://premium.test/drm"))
	roots, err := keystore.LoadRoots(pki.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	a.roots, b.roots = roots, roots

	fresh := a.handshake(t) // not used yet: its requests carry the ticket
	resp, _ := b.post(t, "catalog", fresh.NewCatalogRequest().Envelope())
	wantRefusal(t, "a ticket of endpoint A at endpoint B", resp, http.StatusForbidden, "unknown-session")

	used := a.session(t)
	resp, _ = b.post(t, "catalog", used.NewCatalogRequest().Envelope())
	wantRefusal(t, "a session in use at A, at B", resp, http.StatusForbidden, "unknown-session")

	if used.Endpoint() != "http://free.test/drm" {
		t.Fatalf("the session names endpoint %q", used.Endpoint())
	}
	// At its own endpoint the session goes on.
	req := used.NewCatalogRequest()
	resp, body := a.post(t, "catalog", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("at its own endpoint: %s", resp.Status)
	}
	if _, err := req.OpenReply(body); err != nil {
		t.Fatal(err)
	}
}
