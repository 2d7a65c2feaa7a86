package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// testIdentity makes a self-signed identity; the tests pin its certificate.
func testIdentity(t testing.TB, kind string) Identity {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{Signer: signer, Chain: [][]byte{der}}
}

// pinned trusts exactly the leaf of id.
func pinned(id Identity) func([][]byte) (*x509.Certificate, error) {
	return func(chain [][]byte) (*x509.Certificate, error) {
		if len(chain) == 0 || !bytes.Equal(chain[0], id.Chain[0]) {
			return nil, errors.New("certificate is not the pinned one")
		}
		return x509.ParseCertificate(chain[0])
	}
}

// testTickets is one fixed ticket key.
type testTickets struct{ key [32]byte }

func (k testTickets) Current() (uint32, [32]byte) { return 7, k.key }
func (k testTickets) Lookup(id uint32) ([32]byte, bool) {
	return k.key, id == 7
}

// testServer makes a server of cfg with what the tests do not care about
// filled in: an endpoint, ticket keys, the smallest chunk, and the largest
// limits where cfg sets none.
func testServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Endpoint == "" {
		cfg.Endpoint = "https://drm.test/drm"
	}
	if cfg.Tickets == nil {
		cfg.Tickets = testTickets{key: [32]byte{1, 2, 3}}
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = MinChunkSize
	}
	cfg.Limits = generous(cfg.Limits)
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// generous sets the limits l leaves unset to the largest allowed.
func generous(l EpochLimits) EpochLimits {
	if l.Chunks == 0 {
		l.Chunks = 1<<32 - 1
	}
	if l.Bytes == 0 {
		l.Bytes = MaxEpochBytes
	}
	if l.AgeSeconds == 0 {
		l.AgeSeconds = 1<<32 - 1
	}
	return l
}

// accept runs srv.Accept and resumes the session from the reply's
// ticket, as the server does on the session's first request.
func accept(t testing.TB, srv *Server, hello []byte) (*ServerSession, []byte, error) {
	t.Helper()
	hs, reply, err := srv.Accept(hello)
	if err != nil {
		return nil, nil, err
	}
	signed, err := parseSigned(reply)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := srv.Resume(signed.Ticket, hs.Session)
	if err != nil {
		t.Fatal(err)
	}
	return ss, reply, nil
}

type pair struct {
	server *ServerSession
	client *ClientSession
	srv    *Server
}

func newPair(t testing.TB, suite Suite, limits EpochLimits) pair {
	t.Helper()
	return newPairSized(t, suite, limits, MinChunkSize)
}

func newPairSized(t testing.TB, suite Suite, limits EpochLimits, chunkSize int) pair {
	t.Helper()
	id := testIdentity(t, "ed25519")
	scfg := testServer(t, ServerConfig{Suites: []Suite{suite}, Identity: id, ChunkSize: chunkSize, Limits: limits})
	ccfg := &ClientConfig{Suites: []Suite{suite}, VerifyCertificate: pinned(id)}
	hs, hello, err := ccfg.Start()
	if err != nil {
		t.Fatal(err)
	}
	ss, reply, err := accept(t, scfg, hello)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	return pair{ss, cs, scfg}
}

// serveChunk plays the server for one chunk request: open, then seal
// data as chunk index of a medium of size bytes.
func (p pair) serveChunk(t testing.TB, req *Request, size uint64, data []byte) ([]byte, error) {
	t.Helper()
	a, err := p.server.OpenRequest(req.Envelope())
	if err != nil {
		return nil, err
	}
	return p.server.SealChunk(nil, a, size, data)
}

func (p pair) rekey(t testing.TB) {
	t.Helper()
	rk, err := p.client.StartRekey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.server.OpenRequest(rk.Request().Envelope())
	if err != nil {
		t.Fatal(err)
	}
	reply, err := p.server.Rekey(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := rk.Finish(reply); err != nil {
		t.Fatal(err)
	}
}
