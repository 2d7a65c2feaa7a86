package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestEveryReplyCountsAgainstTheByteLimit: catalog replies count like
// chunks, and once an epoch's bytes are spent it serves neither catalogs
// nor chunks until it is rekeyed (rekeys and closes always pass).
func TestEveryReplyCountsAgainstTheByteLimit(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{Bytes: 3 * MinChunkSize})
	big := bytes.Repeat([]byte("c"), MinChunkSize)
	for i := range 3 {
		r := p.client.NewCatalogRequest()
		a, err := p.server.OpenRequest(r.Envelope())
		if err != nil {
			t.Fatalf("catalog %d: %v", i, err)
		}
		if _, err := p.server.SealReply(a, big); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.server.OpenRequest(p.client.NewCatalogRequest().Envelope()); !errors.Is(err, ErrRekeyRequired) {
		t.Fatalf("a catalog past the byte limit: %v", err)
	}
	if _, err := p.serveChunk(t, p.client.NewChunkRequest("a", 0), 1, []byte("x")); !errors.Is(err, ErrRekeyRequired) {
		t.Fatalf("a chunk past the byte limit: %v", err)
	}
	p.rekey(t)
	r := p.client.NewCatalogRequest()
	if _, err := p.server.OpenRequest(r.Envelope()); err != nil {
		t.Fatalf("a catalog after the rekey: %v", err)
	}
}

// TestSessionsEndWithTheCertificate: once the server's certificate has
// expired, its sessions take no more requests and it makes no new ones
// (the client refuses to rekey past it too).
func TestSessionsEndWithTheCertificate(t *testing.T) {
	id := testIdentity(t, "ed25519") // valid for an hour
	c := &clock{t: time.Now()}
	srv := testServer(t, ServerConfig{Suites: DefaultSuites()[:1], Identity: id, Now: c.now})
	hs, hello, _ := (&ClientConfig{Suites: DefaultSuites()[:1], VerifyCertificate: pinned(id), Now: c.now}).Start()
	ss, reply, err := accept(t, srv, hello)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.OpenRequest(cs.NewCatalogRequest().Envelope()); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(2 * time.Hour)
	if _, err := ss.OpenRequest(cs.NewCatalogRequest().Envelope()); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("a request after the certificate expired: %v", err)
	}
	if _, err := cs.StartRekey(); !errors.Is(err, errCertificate) {
		t.Fatalf("a rekey after the certificate expired: %v", err)
	}
	if _, _, err := srv.Accept(hello); err == nil {
		t.Fatal("a handshake with an expired certificate")
	}
}

// TestRekeySoonCountsTheEffectiveLimit: the rekey-soon flag comes when a
// sixteenth (at least rekeySoonChunks) of the chunks the epoch can serve
// is left, whichever limit bounds it — not from the start of an epoch
// whose chunk limit is far above what its byte limit allows.
func TestRekeySoonCountsTheEffectiveLimit(t *testing.T) {
	for _, c := range []struct {
		name      string
		limits    EpochLimits
		firstSoon uint32 // the first chunk (from 1) flagged
	}{
		{"chunks bound", EpochLimits{Chunks: 64}, 64 - rekeySoonChunks},
		{"bytes bound, chunks unbounded", EpochLimits{Chunks: 1<<32 - 1, Bytes: 64 * MinChunkSize}, 64 - rekeySoonChunks},
		{"large epoch: a sixteenth", EpochLimits{Bytes: 1024 * MinChunkSize}, 1024 - 1024/16},
		{"fewer chunks than the margin", EpochLimits{Chunks: 3}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, DefaultSuites()[0], c.limits)
			data := make([]byte, MinChunkSize)
			for i := uint32(1); i <= c.firstSoon; i++ {
				req := p.client.NewChunkRequest("a", 0)
				reply, err := p.serveChunk(t, req, MinChunkSize, data)
				if err != nil {
					t.Fatal(err)
				}
				chunk, err := req.OpenChunk(reply)
				if err != nil {
					t.Fatal(err)
				}
				if chunk.RekeySoon != (i == c.firstSoon) {
					t.Fatalf("chunk %d: rekey soon %v, want it first at chunk %d", i, chunk.RekeySoon, c.firstSoon)
				}
			}
		})
	}
}

// TestCatalogAndCloseCarryNothing: the requests without a structure must
// be empty (§12), so none can smuggle bytes past the limits.
func TestCatalogAndCloseCarryNothing(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{})
	for _, typ := range []MessageType{MsgCatalog, MsgClose} {
		for _, n := range []int{1, 2, 100} {
			if _, err := p.server.OpenRequest(p.client.newRequest(typ, bytes.Repeat([]byte("x"), n)).Envelope()); !errors.Is(err, ErrMalformed) {
				t.Errorf("a %s request with %d bytes: %v, want ErrMalformed", typ, n, err)
			}
		}
		if _, err := p.server.OpenRequest(p.client.newRequest(typ, nil).Envelope()); err != nil {
			t.Errorf("an empty %s request: %v", typ, err)
		}
	}
}

// TestClosedSessionsTakeNothing: after Close, a session opens no request,
// and a rekey it had accepted before is refused rather than derived from
// the wiped chain.
func TestClosedSessionsTakeNothing(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{})
	rk, err := p.client.StartRekey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.server.OpenRequest(rk.Request().Envelope())
	if err != nil {
		t.Fatal(err)
	}
	p.server.Close()
	if _, err := p.server.Rekey(a); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("a rekey accepted before Close, answered after: %v", err)
	}
	if _, err := p.server.OpenRequest(p.client.NewCatalogRequest().Envelope()); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("a request after Close: %v", err)
	}
}

// TestRekeyFinishChecksTheCertificate: a rekey answer that arrives after
// the server's certificate expired is refused, though its signature is
// good.
func TestRekeyFinishChecksTheCertificate(t *testing.T) {
	id := testIdentity(t, "ed25519") // valid for an hour
	c := &clock{t: time.Now()}
	srv := testServer(t, ServerConfig{Suites: DefaultSuites()[:1], Identity: id, Now: c.now})
	hs, hello, _ := (&ClientConfig{Suites: DefaultSuites()[:1], VerifyCertificate: pinned(id), Now: c.now}).Start()
	ss, reply, err := accept(t, srv, hello)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := cs.StartRekey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := ss.OpenRequest(rk.Request().Envelope())
	if err != nil {
		t.Fatal(err)
	}
	answer, err := ss.Rekey(a)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(2 * time.Hour)
	if err := rk.Finish(answer); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a rekey finished after the certificate expired: %v", err)
	}
	if cs.Epoch() != 0 {
		t.Fatalf("the session moved to epoch %d", cs.Epoch())
	}
}
