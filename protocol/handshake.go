package protocol

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"
)

// ClientConfig is the client side of the handshake.
type ClientConfig struct {
	// Endpoint, when set, is the endpoint name the server must announce
	// (ServerConfig.Endpoint): a server of another endpoint with a trusted
	// certificate is then refused. Empty accepts any; the session's
	// Endpoint tells which it was.
	Endpoint string
	// Suites in the client's order of preference.
	Suites []Suite
	// VerifyCertificate checks the server's chain (DER, leaf first)
	// against the pinned root and returns the verified leaf, whose key
	// must sign the transcript and whose expiry ends the session. It must
	// not be nil; keystore.ServerVerifier makes one.
	VerifyCertificate func(chain [][]byte) (*x509.Certificate, error)
	// Credentials are the kinds of credential the client holds
	// (CredentialDevice, CredentialUser), told to the server.
	Credentials []string
	// Now defaults to time.Now.
	Now func() time.Time
}

func (c *ClientConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// ClientHandshake is a handshake in flight.
type ClientHandshake struct {
	cfg   *ClientConfig
	hello []byte
	keys  map[string]clientKey
}

// Start makes the ClientHello, with a fresh key share for every group of
// the offered suites.
func (c *ClientConfig) Start() (*ClientHandshake, []byte, error) {
	if len(c.Suites) == 0 {
		return nil, nil, fmt.Errorf("%w: client offers no suite", errNoCommonSuite)
	}
	ch := clientHelloMsg{Version: version, Random: randomBytes(randomSize), Suites: SuiteNames(c.Suites), KeyShares: map[string][]byte{},
		Credentials: c.Credentials}
	keys := map[string]clientKey{}
	for _, s := range c.Suites {
		name := s.group.Name()
		if _, ok := keys[name]; ok {
			continue
		}
		k, err := s.group.generateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		keys[name] = k
		ch.KeyShares[name] = k.share()
	}
	hello, err := json.Marshal(ch)
	if err != nil {
		return nil, nil, err
	}
	return &ClientHandshake{cfg: c, hello: hello, keys: keys}, hello, nil
}

// Finish checks the server's reply — certificate chain, signature over the
// whole transcript, a suite the client offered — and derives epoch 0.
func (h *ClientHandshake) Finish(reply []byte) (*ClientSession, error) {
	signed, err := parseSigned(reply)
	if err != nil {
		return nil, err
	}
	sh, err := parseServerHello(signed.Message)
	if err != nil {
		return nil, err
	}
	suite, err := h.offered(sh.Suite)
	if err != nil {
		return nil, err
	}
	if len(signed.Ticket) == 0 || len(signed.Ticket) > maxTicketSize {
		return nil, fmt.Errorf("%w: a ticket of %d bytes", ErrMalformed, len(signed.Ticket))
	}
	leaf, err := h.cfg.VerifyCertificate(sh.Certificates)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCertificate, err)
	}
	th := transcriptHash(suite.hash, transcriptContext, h.hello, signed.Message)
	if err := verifyTranscript(leaf.PublicKey, th, signed.Signature); err != nil {
		return nil, err
	}
	// Checked once the server proved who it is, so that only a server
	// with a trusted key, not anyone on the path, can make the client
	// report another endpoint name.
	if h.cfg.Endpoint != "" && sh.Endpoint != h.cfg.Endpoint {
		return nil, fmt.Errorf("%w: the server is endpoint %q, not %q", ErrWrongEndpoint, sh.Endpoint, h.cfg.Endpoint)
	}
	shared, err := h.keys[suite.group.Name()].finish(sh.KeyShare)
	if err != nil {
		return nil, err
	}
	defer wipe(shared)
	keys, err := newEpochKeys(suite, 0, shared, nil, th)
	if err != nil {
		return nil, err
	}
	s := &ClientSession{endpoint: sh.Endpoint, suite: suite, chunkSize: sh.ChunkSize, limits: sh.Limits,
		serverKey: leaf.PublicKey, serverExpiry: leaf.NotAfter, now: h.cfg.now, ticket: signed.Ticket, current: keys,
		requested: sh.CredentialsRequested, authorities: sh.CredentialAuthorities, schemes: sh.SignatureSchemes}
	copy(s.id[:], sh.SessionID)
	return s, nil
}

func (h *ClientHandshake) offered(name string) (Suite, error) {
	for _, s := range h.cfg.Suites {
		if s.Name() == name {
			return s, nil
		}
	}
	return Suite{}, fmt.Errorf("%w: server chose %q, which the client did not offer", errNoCommonSuite, name)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}
