package caddymodule

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestFirstRequestReplays: a session's first request carries its ticket.
// Sent 32 times at once it is answered once (the rest are replays of a
// stored session), and replayed after the session closed it brings
// nothing back: no reply is ever sealed twice under one key and nonce.
func TestFirstRequestReplays(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(10, 1)}), nil)
	cs := e.handshake(t)
	first := cs.NewCatalogRequest().Envelope()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := e.post(t, "catalog", first)
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[http.StatusOK] != 1 || statuses[http.StatusConflict] != 31 {
		t.Fatalf("32 copies of a first request: %v, want one 200 and 31 409 (replay)", statuses)
	}
	closeReq := cs.NewCloseRequest()
	if resp, _ := e.post(t, "close", closeReq.Envelope()); resp.StatusCode != http.StatusOK {
		t.Fatalf("close: %s", resp.Status)
	}
	resp, _ := e.post(t, "catalog", first)
	wantRefusal(t, "the first request replayed after close", resp, http.StatusForbidden, "unknown-session")
	if n := e.h.sessions.Len(); n != 0 {
		t.Fatalf("%d sessions stored after the replay", n)
	}
}

// TestEndedSessionsOutliveWallClockSteps: a ticket's age is checked on
// the wall clock, which may step back (NTP, an operator); the store
// remembers an ended session on the steady clock until the ticket's key
// is gone, so a replayed ticket still cannot bring the session back.
func TestEndedSessionsOutliveWallClockSteps(t *testing.T) {
	steady, wall := newFakeClock(), newFakeClock()
	keys := newTicketKeyring(protocol.DefaultTicketLifetime)
	keys.now = steady.now
	store, _ := testStore(time.Hour, 10)
	store.now = steady.now
	srv := newTicketServer(t, keys, wall.now)

	hs, reply, err := srv.Accept(newHello(t))
	if err != nil {
		t.Fatal(err)
	}
	var signed struct {
		Ticket []byte `json:"ticket"`
	}
	if err := json.Unmarshal(reply, &signed); err != nil {
		t.Fatal(err)
	}
	s, err := srv.Resume(signed.Ticket, hs.Session)
	if err != nil {
		t.Fatal(err)
	}
	if err := add(store, s); err != nil {
		t.Fatal(err)
	}
	store.Delete(s.ID())

	// 61 s later on the steady clock, the wall clock having stepped back
	// 60 s: the ticket is fresh by the wall clock and its key still
	// exists, so it resumes — and the store refuses it.
	steady.advance(61 * time.Second)
	wall.advance(time.Second)
	again, err := srv.Resume(signed.Ticket, hs.Session)
	if err != nil {
		t.Fatalf("the ticket no longer resumes, the test proves nothing: %v", err)
	}
	if _, err := store.Redeem(again); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Fatalf("an ended session came back from its ticket after a wall-clock step: %v", err)
	}
	// Two lifetimes after the key was made, the key is gone: no wall
	// clock makes the ticket open.
	steady.advance(time.Minute)
	if _, err := srv.Resume(signed.Ticket, hs.Session); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Fatalf("a ticket resumed after its key should be gone: %v", err)
	}
}

// newTicketServer is a protocol server on keys and the wall clock now.
func newTicketServer(t *testing.T, keys protocol.TicketKeys, now func() time.Time) *protocol.Server {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now().Add(-time.Hour), NotAfter: now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := protocol.NewServer(protocol.ServerConfig{Endpoint: "test", Suites: protocol.DefaultSuites()[:1],
		ChunkSize: protocol.DefaultChunkSize, Limits: protocol.DefaultLimits(), Tickets: keys, Now: now,
		Identity: protocol.Identity{Signer: key, Chain: [][]byte{der}}})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func newHello(t *testing.T) []byte {
	t.Helper()
	_, hello, err := (&protocol.ClientConfig{Suites: protocol.DefaultSuites()[:1]}).Start()
	if err != nil {
		t.Fatal(err)
	}
	return hello
}
