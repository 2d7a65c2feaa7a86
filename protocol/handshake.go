package protocol

import (
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ClientHello opens a session. It is JSON; its exact bytes enter the
// transcript, so nothing in it can be changed or stripped unnoticed.
type ClientHello struct {
	Version int    `json:"version"`
	Random  []byte `json:"random"`
	// Suites in the client's order of preference.
	Suites []string `json:"suites"`
	// KeyShares holds one share per group of the offered suites, keyed by
	// group name, so the handshake takes one round trip.
	KeyShares map[string][]byte `json:"key_shares"`
	// Credentials is reserved for client-device and user authentication:
	// the kinds of credential the client can present ("device", "user").
	Credentials []string `json:"credentials,omitempty"`
}

// ServerHello answers a ClientHello. The server signs the transcript
// (ClientHello ‖ ServerHello) with the key of Certificates[0].
type ServerHello struct {
	Version      int         `json:"version"`
	Random       []byte      `json:"random"`
	Suite        string      `json:"suite"`
	SessionID    []byte      `json:"session_id"`
	KeyShare     []byte      `json:"key_share"`
	Certificates [][]byte    `json:"certificates"`
	ChunkSize    int         `json:"chunk_size"`
	Limits       EpochLimits `json:"limits"`
	// CredentialsRequested is reserved for client authentication: the
	// credentials the client must present in a MsgClientAuth request
	// before anything else. Empty in this revision.
	CredentialsRequested []string `json:"credentials_requested,omitempty"`
}

// EpochLimits is when the server retires a key epoch: whichever of chunks
// served, plaintext bytes served and age comes first.
type EpochLimits struct {
	Chunks     uint32 `json:"chunks"`
	Bytes      uint64 `json:"bytes"`
	AgeSeconds uint32 `json:"age_seconds"`
}

// Age returns the age limit as a duration.
func (l EpochLimits) Age() time.Duration { return time.Duration(l.AgeSeconds) * time.Second }

// DefaultLimits are the server's default epoch limits.
func DefaultLimits() EpochLimits {
	return EpochLimits{Chunks: DefaultRekeyChunks, Bytes: DefaultRekeyBytes, AgeSeconds: uint32(DefaultRekeyAge / time.Second)}
}

// Signed carries a message and the server's signature over the transcript
// that ends with the message's exact bytes.
type Signed struct {
	Message   json.RawMessage `json:"message"`
	Signature []byte          `json:"signature"`
}

const (
	maxSuitesOffered = 128
	maxKeyShares     = 8
	maxCredentials   = 8
)

// ParseClientHello decodes and checks a ClientHello.
func ParseClientHello(b []byte) (*ClientHello, error) {
	if len(b) > MaxHandshakeSize {
		return nil, fmt.Errorf("%w: client hello larger than %d bytes", ErrMalformed, MaxHandshakeSize)
	}
	var ch ClientHello
	if err := json.Unmarshal(b, &ch); err != nil {
		return nil, fmt.Errorf("%w: client hello: %v", ErrMalformed, err)
	}
	switch {
	case ch.Version != Version:
		return nil, fmt.Errorf("%w: client speaks %d, server %d", ErrVersion, ch.Version, Version)
	case len(ch.Random) != RandomSize:
		return nil, fmt.Errorf("%w: client random is %d bytes, want %d", ErrMalformed, len(ch.Random), RandomSize)
	case len(ch.Suites) == 0 || len(ch.Suites) > maxSuitesOffered:
		return nil, fmt.Errorf("%w: client offers %d suites", ErrMalformed, len(ch.Suites))
	case len(ch.KeyShares) == 0 || len(ch.KeyShares) > maxKeyShares:
		return nil, fmt.Errorf("%w: client sends %d key shares", ErrMalformed, len(ch.KeyShares))
	case len(ch.Credentials) > maxCredentials:
		return nil, fmt.Errorf("%w: client lists %d credentials", ErrMalformed, len(ch.Credentials))
	}
	return &ch, nil
}

// ParseSigned decodes the envelope of a signed server message.
func ParseSigned(b []byte) (*Signed, error) {
	if len(b) > MaxHandshakeSize {
		return nil, fmt.Errorf("%w: signed message larger than %d bytes", ErrMalformed, MaxHandshakeSize)
	}
	var s Signed
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: signed message: %v", ErrMalformed, err)
	}
	if len(s.Message) == 0 || len(s.Signature) == 0 {
		return nil, fmt.Errorf("%w: signed message without message or signature", ErrMalformed)
	}
	return &s, nil
}

// ParseServerHello decodes and checks a ServerHello.
func ParseServerHello(b []byte) (*ServerHello, error) {
	if len(b) > MaxHandshakeSize {
		return nil, fmt.Errorf("%w: server hello larger than %d bytes", ErrMalformed, MaxHandshakeSize)
	}
	var sh ServerHello
	if err := json.Unmarshal(b, &sh); err != nil {
		return nil, fmt.Errorf("%w: server hello: %v", ErrMalformed, err)
	}
	switch {
	case sh.Version != Version:
		return nil, fmt.Errorf("%w: server speaks %d, client %d", ErrVersion, sh.Version, Version)
	case len(sh.Random) != RandomSize:
		return nil, fmt.Errorf("%w: server random is %d bytes", ErrMalformed, len(sh.Random))
	case len(sh.SessionID) != SessionIDSize:
		return nil, fmt.Errorf("%w: session id is %d bytes", ErrMalformed, len(sh.SessionID))
	case len(sh.Certificates) == 0:
		return nil, fmt.Errorf("%w: server sent no certificate", ErrMalformed)
	case sh.ChunkSize < MinChunkSize || sh.ChunkSize > MaxChunkSize:
		return nil, fmt.Errorf("%w: chunk size %d out of range", ErrMalformed, sh.ChunkSize)
	}
	return &sh, nil
}

// transcriptHash hashes a context string and length-prefixed parts, so no
// two different sequences of messages hash alike.
func transcriptHash(h crypto.Hash, context string, parts ...[]byte) []byte {
	d := h.New()
	io.WriteString(d, context)
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		d.Write(n[:])
		d.Write(p)
	}
	return d.Sum(nil)
}

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
	ch, err := ParseClientHello(clientHello)
	if err != nil {
		return nil, nil, err
	}
	suite, err := Negotiate(c.Suites, ch.Suites)
	if err != nil {
		return nil, nil, err
	}
	share, ok := ch.KeyShares[suite.Group.Name()]
	if !ok {
		return nil, nil, fmt.Errorf("%w: suite %s chosen but no %s share sent", ErrKeyShare, suite.Name(), suite.Group.Name())
	}
	serverShare, shared, err := suite.Group.Respond(rand.Reader, share)
	if err != nil {
		return nil, nil, err
	}
	sh := ServerHello{
		Version:      Version,
		Random:       randomBytes(RandomSize),
		Suite:        suite.Name(),
		SessionID:    randomBytes(SessionIDSize),
		KeyShare:     serverShare,
		Certificates: c.Identity.Chain,
		ChunkSize:    c.ChunkSize,
		Limits:       c.Limits,
	}
	shBytes, err := json.Marshal(sh)
	if err != nil {
		return nil, nil, err
	}
	th := transcriptHash(suite.Hash, transcriptContext, clientHello, shBytes)
	sig, err := SignTranscript(c.Identity.Signer, th)
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: signing the transcript: %w", err)
	}
	keys, err := newEpochKeys(suite, 0, shared, nil, th)
	if err != nil {
		return nil, nil, err
	}
	reply, err := json.Marshal(Signed{Message: shBytes, Signature: sig})
	if err != nil {
		return nil, nil, err
	}
	s := &ServerSession{
		Suite:     suite,
		ChunkSize: c.ChunkSize,
		limits:    c.Limits,
		signer:    c.Identity.Signer,
		now:       c.now,
	}
	copy(s.ID[:], sh.SessionID)
	s.install(keys)
	return s, reply, nil
}

// ClientConfig is the client side of the handshake.
type ClientConfig struct {
	// Suites in the client's order of preference.
	Suites []Suite
	// VerifyCertificate checks the server's chain (DER, leaf first) against
	// the pinned root and returns the leaf's public key. It must not be nil.
	VerifyCertificate func(chain [][]byte) (crypto.PublicKey, error)
}

// ClientHandshake is a handshake in flight.
type ClientHandshake struct {
	cfg   *ClientConfig
	hello []byte
	keys  map[string]ClientKey
}

// Start makes the ClientHello, with a fresh key share for every group of
// the offered suites.
func (c *ClientConfig) Start() (*ClientHandshake, []byte, error) {
	if len(c.Suites) == 0 {
		return nil, nil, fmt.Errorf("%w: client offers no suite", ErrNoCommonSuite)
	}
	ch := ClientHello{Version: Version, Random: randomBytes(RandomSize), Suites: SuiteNames(c.Suites), KeyShares: map[string][]byte{}}
	keys := map[string]ClientKey{}
	for _, s := range c.Suites {
		name := s.Group.Name()
		if _, ok := keys[name]; ok {
			continue
		}
		k, err := s.Group.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		keys[name] = k
		ch.KeyShares[name] = k.Share()
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
	signed, err := ParseSigned(reply)
	if err != nil {
		return nil, err
	}
	sh, err := ParseServerHello(signed.Message)
	if err != nil {
		return nil, err
	}
	suite, err := h.offered(sh.Suite)
	if err != nil {
		return nil, err
	}
	pub, err := h.cfg.VerifyCertificate(sh.Certificates)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	th := transcriptHash(suite.Hash, transcriptContext, h.hello, signed.Message)
	if err := VerifyTranscript(pub, th, signed.Signature); err != nil {
		return nil, err
	}
	shared, err := h.keys[suite.Group.Name()].Finish(sh.KeyShare)
	if err != nil {
		return nil, err
	}
	keys, err := newEpochKeys(suite, 0, shared, nil, th)
	if err != nil {
		return nil, err
	}
	s := &ClientSession{Suite: suite, ChunkSize: sh.ChunkSize, Limits: sh.Limits, serverKey: pub, current: keys}
	copy(s.ID[:], sh.SessionID)
	return s, nil
}

func (h *ClientHandshake) offered(name string) (Suite, error) {
	for _, s := range h.cfg.Suites {
		if s.Name() == name {
			return s, nil
		}
	}
	return Suite{}, fmt.Errorf("%w: server chose %q, which the client did not offer", ErrNoCommonSuite, name)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}
