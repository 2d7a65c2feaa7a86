package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// clock is an injectable now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestTicketCarriesTheSession: the server keeps nothing of a handshake; the
// client's first requests carry the ticket, the server resumes the session
// from it, and once a reply came the client stops sending it.
func TestTicketCarriesTheSession(t *testing.T) {
	id := testIdentity(t, "ed25519")
	srv := testServer(t, ServerConfig{Suites: DefaultSuites()[:1], Identity: id})
	hs, hello, err := (&ClientConfig{Suites: DefaultSuites()[:1], VerifyCertificate: pinned(id)}).Start()
	if err != nil {
		t.Fatal(err)
	}
	_, reply, err := srv.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	client, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	if client.Endpoint() != "https://drm.test/drm" {
		t.Fatalf("endpoint %q", client.Endpoint())
	}
	first := client.NewCatalogRequest()
	info, err := PeekRequest(first.Envelope())
	if err != nil || info.Ticket == nil || info.Session != client.ID() {
		t.Fatalf("the first request carries no ticket: %+v %v", info, err)
	}
	server, err := srv.Resume(info.Ticket, info.Session)
	if err != nil {
		t.Fatal(err)
	}
	a, err := server.OpenRequest(first.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	// Requests built before the reply still carry it.
	second := client.NewChunkRequest("a.flac", 0)
	if info, _ := PeekRequest(second.Envelope()); info.Ticket == nil {
		t.Fatal("a request before the first reply has no ticket")
	}
	r, err := server.SealReply(a, []byte("[]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.OpenReply(r); err != nil {
		t.Fatal(err)
	}
	third := client.NewCatalogRequest()
	if info, _ := PeekRequest(third.Envelope()); info.Ticket != nil {
		t.Fatal("a request after the first reply still carries the ticket")
	}
	for _, r := range []*Request{second, third} {
		if _, err := server.OpenRequest(r.Envelope()); err != nil {
			t.Fatalf("%s request: %v", r.Type(), err)
		}
	}
	// A ticket in the envelope is authenticated: another ticket, or none,
	// under the same header fails.
	env := first.Envelope()
	swapped := bytes.Clone(env)
	swapped[requestHeaderSize+10] ^= 1
	if _, err := server.OpenRequest(swapped); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("a changed ticket: %v", err)
	}
}

// TestResumeRefuses: a ticket opens only at the server that made it, for
// its own session, while it is fresh and the configuration is the same.
func TestResumeRefuses(t *testing.T) {
	id := testIdentity(t, "ed25519")
	c := &clock{t: time.Now()}
	base := ServerConfig{Suites: DefaultSuites()[:2], Identity: id, Now: c.now, TicketLifetime: time.Minute}
	srv := testServer(t, base)
	hs, hello, _ := (&ClientConfig{Suites: DefaultSuites()[:1], VerifyCertificate: pinned(id)}).Start()
	_, reply, err := srv.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	client, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := PeekRequest(client.NewCatalogRequest().Envelope())
	ticket, sid := info.Ticket, info.Session
	if _, err := srv.Resume(ticket, sid); err != nil {
		t.Fatalf("a fresh ticket: %v", err)
	}
	variant := func(change func(*ServerConfig)) *Server {
		cfg := base
		change(&cfg)
		return testServer(t, cfg)
	}
	other := sid
	other[0] ^= 1
	bad := bytes.Clone(ticket)
	bad[len(bad)-1] ^= 1
	for _, tc := range []struct {
		name   string
		srv    *Server
		ticket []byte
		id     SessionID
		reason string
	}{
		{"another session's ticket", srv, ticket, other, "another session's"},
		{"a changed ticket", srv, bad, sid, "does not open"},
		{"a short ticket", srv, ticket[:10], sid, "ticket of 10 bytes"},
		{"another endpoint", variant(func(c *ServerConfig) { c.Endpoint = "https://other.test/drm" }), ticket, sid, "for endpoint"},
		{"another ticket key", variant(func(c *ServerConfig) { c.Tickets = testTickets{key: [32]byte{9}} }), ticket, sid, "does not open"},
		{"the suite is no longer accepted", variant(func(c *ServerConfig) { c.Suites = DefaultSuites()[1:2] }), ticket, sid, "no longer accepted"},
		{"another identity", variant(func(c *ServerConfig) { c.Identity = testIdentity(t, "p256") }), ticket, sid, "another configuration"},
		{"another chunk size", variant(func(c *ServerConfig) { c.ChunkSize = 2 * MinChunkSize }), ticket, sid, "another configuration"},
		{"other limits", variant(func(c *ServerConfig) { c.Limits = EpochLimits{Chunks: 5} }), ticket, sid, "another configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.srv.Resume(tc.ticket, tc.id)
			if !errors.Is(err, ErrUnknownSession) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("%v, want unknown-session: ...%s...", err, tc.reason)
			}
		})
	}
	// Too old: a minute and a second after the handshake.
	c.t = c.t.Add(time.Minute + time.Second)
	if _, err := srv.Resume(ticket, sid); !errors.Is(err, ErrUnknownSession) || !strings.Contains(err.Error(), "issued") {
		t.Fatalf("an old ticket: %v", err)
	}
}

// TestClientPinsEndpoint: a client that expects an endpoint refuses a
// server that names another, however trusted its certificate.
func TestClientPinsEndpoint(t *testing.T) {
	id := testIdentity(t, "ed25519")
	srv := testServer(t, ServerConfig{Suites: DefaultSuites()[:1], Identity: id, Endpoint: "https://free.test/drm"})
	for _, want := range []string{"https://premium.test/drm", ""} {
		hs, hello, _ := (&ClientConfig{Suites: DefaultSuites()[:1], VerifyCertificate: pinned(id), Endpoint: want}).Start()
		_, reply, err := srv.Accept(hello)
		if err != nil {
			t.Fatal(err)
		}
		_, err = hs.Finish(reply)
		if want != "" && !errors.Is(err, ErrWrongEndpoint) {
			t.Fatalf("expecting %s: %v", want, err)
		}
		if want == "" && err != nil {
			t.Fatalf("expecting any endpoint: %v", err)
		}
	}
}

// TestNewServerRefuses: an incomplete or unsafe configuration is an error
// when the server is made, never in a session.
func TestNewServerRefuses(t *testing.T) {
	id := testIdentity(t, "ed25519")
	ok := ServerConfig{Endpoint: "e", Suites: DefaultSuites(), Identity: id, ChunkSize: MinChunkSize,
		Limits: DefaultLimits(), Tickets: testTickets{}}
	if _, err := NewServer(ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*ServerConfig)
		want   string
	}{
		{"no endpoint", func(c *ServerConfig) { c.Endpoint = "" }, "endpoint"},
		{"endpoint one byte too long", func(c *ServerConfig) { c.Endpoint = strings.Repeat("e", maxEndpointSize+1) }, "endpoint"},
		{"endpoint with a control character", func(c *ServerConfig) { c.Endpoint = "media\n.example" }, "printable"},
		{"endpoint not UTF-8", func(c *ServerConfig) { c.Endpoint = "media\xff" }, "printable"},
		{"no suite", func(c *ServerConfig) { c.Suites = nil }, "suite"},
		{"chunk too small", func(c *ServerConfig) { c.ChunkSize = MinChunkSize - 1 }, "chunk size"},
		{"chunk too large", func(c *ServerConfig) { c.ChunkSize = MaxChunkSize + 1 }, "chunk size"},
		{"no chunk limit", func(c *ServerConfig) { c.Limits.Chunks = 0 }, "every epoch limit"},
		{"no byte limit", func(c *ServerConfig) { c.Limits.Bytes = 0 }, "every epoch limit"},
		{"no age limit", func(c *ServerConfig) { c.Limits.AgeSeconds = 0 }, "every epoch limit"},
		{"bytes below a chunk", func(c *ServerConfig) { c.Limits.Bytes = MinChunkSize - 1 }, "byte limit"},
		{"bytes above the AEAD bound", func(c *ServerConfig) { c.Limits.Bytes = MaxEpochBytes + 1 }, "byte limit"},
		{"no ticket keys", func(c *ServerConfig) { c.Tickets = nil }, "ticket"},
		{"no identity", func(c *ServerConfig) { c.Identity = Identity{} }, "identity"},
	} {
		cfg := ok
		tc.change(&cfg)
		if _, err := NewServer(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := NewServer(ServerConfig{Endpoint: "e", Suites: DefaultSuites(), Identity: id, ChunkSize: MinChunkSize,
		Limits: EpochLimits{Chunks: 1, Bytes: MaxEpochBytes, AgeSeconds: 1}, Tickets: testTickets{}}); err != nil {
		t.Fatalf("the bounds themselves: %v", err)
	}
}

// TestLongestTicketFits: with the longest endpoint names (in bytes and
// in JSON), the largest limits and a SHA-384 suite, a ticket still fits
// in a request header, and the session resumes from it.
func TestLongestTicketFits(t *testing.T) {
	id := testIdentity(t, "p384")
	suite := mustSuite(t, "X25519MLKEM768_AES256_GCM_SHA384")
	for _, endpoint := range []string{
		strings.Repeat("é", maxEndpointSize/2) + "e",
		strings.Repeat(`"`, maxEndpointSize),
		strings.Repeat(`\`, maxEndpointSize),
		strings.Repeat("<", maxEndpointSize), // HTML-escaped JSON would make it 6 bytes a character
	} {
		srv := testServer(t, ServerConfig{Endpoint: endpoint, Suites: []Suite{suite}, Identity: id,
			ChunkSize: MaxChunkSize, Limits: EpochLimits{Chunks: 1<<32 - 1, Bytes: MaxEpochBytes, AgeSeconds: 1<<32 - 1}})
		hs, hello, err := (&ClientConfig{Suites: []Suite{suite}, VerifyCertificate: pinned(id)}).Start()
		if err != nil {
			t.Fatal(err)
		}
		ss, reply, err := accept(t, srv, hello)
		if err != nil {
			t.Fatal(err)
		}
		signed, _ := parseSigned(reply)
		if len(signed.Ticket) > maxTicketSize {
			t.Fatalf("endpoint %.10q…: a ticket of %d bytes, bound %d", endpoint, len(signed.Ticket), maxTicketSize)
		}
		cs, err := hs.Finish(reply)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ss.OpenRequest(cs.NewCatalogRequest().Envelope()); err != nil {
			t.Fatal(err)
		}
		t.Logf("endpoint %.10q…: a ticket of %d bytes", endpoint, len(signed.Ticket))
	}
}
