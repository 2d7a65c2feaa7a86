package protocol

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ServerConfig is the server side of the handshake.
type ServerConfig struct {
	// Suites in the server's order of preference.
	Suites    []Suite
	Identity  Identity
	ChunkSize int
	Limits    EpochLimits
	// Now defaults to time.Now.
	Now func() time.Time
}

func (c *ServerConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Validate checks the configuration: a chunk size in range and a key the
// server can sign with. Accept calls it too (it costs a few comparisons),
// so a bad configuration is an error, never a panic in a session.
func (c *ServerConfig) Validate() error {
	switch {
	case len(c.Suites) == 0:
		return errors.New("protocol: server accepts no suite")
	case c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize:
		return fmt.Errorf("protocol: chunk size %d outside [%d, %d]", c.ChunkSize, MinChunkSize, MaxChunkSize)
	case c.Limits.Bytes != 0 && c.Limits.Bytes < uint64(c.ChunkSize):
		return fmt.Errorf("protocol: epoch byte limit %d is less than one chunk", c.Limits.Bytes)
	case c.Identity.Signer == nil || len(c.Identity.Chain) == 0:
		return errors.New("protocol: server has no identity")
	}
	_, err := signatureHash(c.Identity.Signer.Public())
	return err
}

// Accept runs the server's half of a handshake: it negotiates a suite, answers
// the client's key share, derives epoch 0 and signs the transcript. It
// returns the new session and the reply (a Signed ServerHello).
func (c *ServerConfig) Accept(clientHello []byte) (*ServerSession, []byte, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	ch, err := parseClientHello(clientHello)
	if err != nil {
		return nil, nil, err
	}
	suite, err := negotiate(c.Suites, ch.Suites)
	if err != nil {
		return nil, nil, err
	}
	share, ok := ch.KeyShares[suite.group.Name()]
	if !ok {
		return nil, nil, fmt.Errorf("%w: suite %s chosen but no %s share sent", errKeyShare, suite.Name(), suite.group.Name())
	}
	serverShare, shared, err := suite.group.respond(rand.Reader, share)
	if err != nil {
		return nil, nil, err
	}
	sh := serverHelloMsg{
		Version:      version,
		Random:       randomBytes(randomSize),
		Suite:        suite.Name(),
		SessionID:    randomBytes(sessionIDSize),
		KeyShare:     serverShare,
		Certificates: c.Identity.Chain,
		ChunkSize:    c.ChunkSize,
		Limits:       c.Limits,
	}
	shBytes, err := json.Marshal(sh)
	if err != nil {
		return nil, nil, err
	}
	th := transcriptHash(suite.hash, transcriptContext, clientHello, shBytes)
	sig, err := signTranscript(c.Identity.Signer, th)
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: signing the transcript: %w", err)
	}
	keys, err := newEpochKeys(suite, 0, shared, nil, th)
	if err != nil {
		return nil, nil, err
	}
	reply, err := json.Marshal(signedMsg{Message: shBytes, Signature: sig})
	if err != nil {
		return nil, nil, err
	}
	s := &ServerSession{
		suite:     suite,
		chunkSize: c.ChunkSize,
		limits:    c.Limits,
		signer:    c.Identity.Signer,
		now:       c.now,
	}
	copy(s.id[:], sh.SessionID)
	s.install(keys)
	return s, reply, nil
}

// ClientConfig is the client side of the handshake.
type ClientConfig struct {
	// Suites in the client's order of preference.
	Suites []Suite
	// VerifyCertificate checks the server's chain (DER, leaf first)
	// against the pinned root and returns the verified leaf, whose key
	// must sign the transcript and whose expiry ends the session. It must
	// not be nil; keystore.ServerVerifier makes one.
	VerifyCertificate func(chain [][]byte) (*x509.Certificate, error)
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
	ch := clientHelloMsg{Version: version, Random: randomBytes(randomSize), Suites: SuiteNames(c.Suites), KeyShares: map[string][]byte{}}
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
	leaf, err := h.cfg.VerifyCertificate(sh.Certificates)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCertificate, err)
	}
	th := transcriptHash(suite.hash, transcriptContext, h.hello, signed.Message)
	if err := verifyTranscript(leaf.PublicKey, th, signed.Signature); err != nil {
		return nil, err
	}
	shared, err := h.keys[suite.group.Name()].finish(sh.KeyShare)
	if err != nil {
		return nil, err
	}
	keys, err := newEpochKeys(suite, 0, shared, nil, th)
	if err != nil {
		return nil, err
	}
	s := &ClientSession{suite: suite, chunkSize: sh.ChunkSize, limits: sh.Limits,
		serverKey: leaf.PublicKey, serverExpiry: leaf.NotAfter, now: h.cfg.now, current: keys}
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
