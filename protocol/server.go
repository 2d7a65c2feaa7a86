package protocol

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ServerConfig configures the server side of the protocol.
type ServerConfig struct {
	// Endpoint names what clients talk to, the same on every node that
	// serves it (say "https://media.example.com/drm"). It is signed in
	// every handshake and bound to every session, so a session made for
	// one endpoint is refused at another.
	Endpoint string
	// Suites in the server's order of preference.
	Suites   []Suite
	Identity Identity
	// ChunkSize is the plaintext size of a chunk.
	ChunkSize int
	// Limits end a key epoch; each must be set, and Bytes at most
	// MaxEpochBytes.
	Limits EpochLimits
	// Tickets seal the state of new sessions (§16).
	Tickets TicketKeys
	// TicketLifetime is how long after the handshake a session's first
	// request may come; DefaultTicketLifetime when zero.
	TicketLifetime time.Duration
	// ClientAuth, when it requires credentials, is what clients must
	// present before they are served (§17).
	ClientAuth *ClientAuthPolicy
	// Now defaults to time.Now.
	Now func() time.Time
}

// DefaultTicketLifetime: a client sends its first request right after the
// handshake.
const DefaultTicketLifetime = time.Minute

// Server is a checked ServerConfig: it accepts handshakes and resumes the
// sessions they made from their tickets. It is safe for concurrent use.
type Server struct {
	cfg      ServerConfig
	identity [32]byte  // hash of the leaf certificate
	notAfter time.Time // of the leaf certificate: sessions end then
}

// NewServer checks cfg: an endpoint, suites, a chunk size in range,
// limits within bounds, ticket keys, and an identity whose leaf
// certificate parses and whose key the server can sign with.
func NewServer(cfg ServerConfig) (*Server, error) {
	l := cfg.Limits
	switch {
	case cfg.Endpoint == "" || len(cfg.Endpoint) > maxEndpointSize:
		return nil, fmt.Errorf("protocol: the server's endpoint name must have 1 to %d bytes (has %d)", maxEndpointSize, len(cfg.Endpoint))
	case !utf8.ValidString(cfg.Endpoint) || strings.ContainsFunc(cfg.Endpoint, unicode.IsControl):
		return nil, fmt.Errorf("protocol: the server's endpoint name %q is not printable UTF-8", cfg.Endpoint)
	case len(cfg.Suites) == 0:
		return nil, errors.New("protocol: the server accepts no suite")
	case cfg.ChunkSize < MinChunkSize || cfg.ChunkSize > MaxChunkSize:
		return nil, fmt.Errorf("protocol: chunk size %d outside [%d, %d]", cfg.ChunkSize, MinChunkSize, MaxChunkSize)
	case l.Chunks == 0 || l.Bytes == 0 || l.AgeSeconds == 0:
		return nil, fmt.Errorf("protocol: every epoch limit must be set (chunks %d, bytes %d, age %ds)", l.Chunks, l.Bytes, l.AgeSeconds)
	case l.Bytes < uint64(cfg.ChunkSize) || l.Bytes > MaxEpochBytes:
		return nil, fmt.Errorf("protocol: epoch byte limit %d outside [one chunk, %d]", l.Bytes, uint64(MaxEpochBytes))
	case cfg.Tickets == nil:
		return nil, errors.New("protocol: the server has no ticket keys")
	case cfg.Identity.Signer == nil || len(cfg.Identity.Chain) == 0:
		return nil, errors.New("protocol: the server has no identity")
	}
	if _, err := signatureHash(cfg.Identity.Signer.Public()); err != nil {
		return nil, err
	}
	if err := cfg.ClientAuth.check(); err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cfg.Identity.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("protocol: the server's certificate: %w", err)
	}
	if cfg.TicketLifetime <= 0 {
		cfg.TicketLifetime = DefaultTicketLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, identity: sha256.Sum256(leaf.Raw), notAfter: leaf.NotAfter}, nil
}

// Handshake describes a handshake the server answered, for its logs. The
// session it made exists only in the reply's ticket until its first
// request brings it back (Resume): a handshake leaves the server nothing
// to keep, and no second copy of the session's keys to answer with.
type Handshake struct {
	Session SessionID
	Suite   Suite
}

// Accept runs the server's half of a handshake: it negotiates a suite,
// answers the client's key share, derives epoch 0 and signs the
// transcript. The reply (a Signed ServerHello) carries the session's
// ticket.
func (srv *Server) Accept(clientHello []byte) (Handshake, []byte, error) {
	c := &srv.cfg
	now := c.Now()
	if !now.Before(srv.notAfter) {
		return Handshake{}, nil, fmt.Errorf("protocol: the server's certificate expired at %v", srv.notAfter)
	}
	ch, err := parseClientHello(clientHello)
	if err != nil {
		return Handshake{}, nil, err
	}
	suite, err := negotiate(c.Suites, ch.Suites)
	if err != nil {
		return Handshake{}, nil, err
	}
	share, ok := ch.KeyShares[suite.group.Name()]
	if !ok {
		return Handshake{}, nil, fmt.Errorf("%w: suite %s chosen but no %s share sent", errKeyShare, suite.Name(), suite.group.Name())
	}
	serverShare, shared, err := suite.group.respond(rand.Reader, share)
	if err != nil {
		return Handshake{}, nil, err
	}
	defer wipe(shared)
	// The ticket seals the epoch secret, which needs the transcript hash,
	// which covers the ServerHello that carries the ticket: so the
	// ServerHello is signed without it, and the ticket travels beside it.
	sh := serverHelloMsg{
		Version:      version,
		Random:       randomBytes(randomSize),
		Endpoint:     c.Endpoint,
		Suite:        suite.Name(),
		SessionID:    randomBytes(sessionIDSize),
		KeyShare:     serverShare,
		Certificates: c.Identity.Chain,
		ChunkSize:    c.ChunkSize,
		Limits:       c.Limits,
	}
	if p := c.ClientAuth; p != nil && len(p.Require) > 0 {
		sh.CredentialsRequested, sh.SignatureSchemes = p.Require, signatureSchemes()
		sh.CredentialAuthorities = map[string][][]byte{}
		for _, k := range p.Require {
			sh.CredentialAuthorities[k] = p.Authorities[k]
		}
	}
	shBytes, err := json.Marshal(sh)
	if err != nil {
		return Handshake{}, nil, err
	}
	th := transcriptHash(suite.hash, transcriptContext, clientHello, shBytes)
	sig, err := signTranscript(c.Identity.Signer, th)
	if err != nil {
		return Handshake{}, nil, fmt.Errorf("protocol: signing the transcript: %w", err)
	}
	secret := epochSecret(suite.hash, shared, nil, th)
	defer wipe(secret)
	ticket, err := sealTicket(c.Tickets, &ticketState{
		SessionID: sh.SessionID, Endpoint: c.Endpoint, Suite: suite.Name(), ChunkSize: c.ChunkSize,
		Limits: c.Limits, Identity: srv.identity[:], Issued: now.Unix(), Secret: secret, Transcript: th,
	})
	if err != nil {
		return Handshake{}, nil, err
	}
	reply, err := json.Marshal(signedMsg{Message: shBytes, Signature: sig, Ticket: ticket})
	if err != nil {
		return Handshake{}, nil, err
	}
	return Handshake{Session: SessionID(sh.SessionID), Suite: suite}, reply, nil
}

// Resume rebuilds the session id from its ticket, for its first request.
// It refuses (ErrUnknownSession, with the reason) a ticket that does not
// open, is too old, names another session or endpoint, or was made under a
// configuration this server no longer has (another identity, suite, chunk
// size or limits): the client then runs a new handshake.
func (srv *Server) Resume(ticket []byte, id SessionID) (*ServerSession, error) {
	c := &srv.cfg
	st, err := openTicket(c.Tickets, ticket, c.TicketLifetime, c.Now())
	if err != nil {
		return nil, err
	}
	defer wipe(st.Secret)
	suite, err := parseSuite(st.Suite)
	switch {
	case string(st.SessionID) != string(id[:]):
		return nil, fmt.Errorf("%w: the ticket is another session's", ErrUnknownSession)
	case st.Endpoint != c.Endpoint:
		return nil, fmt.Errorf("%w: the ticket is for endpoint %q, this is %q", ErrUnknownSession, st.Endpoint, c.Endpoint)
	case err != nil || !slices.Contains(c.Suites, suite):
		return nil, fmt.Errorf("%w: the ticket's suite %s is no longer accepted", ErrUnknownSession, st.Suite)
	case string(st.Identity) != string(srv.identity[:]) || st.ChunkSize != c.ChunkSize || st.Limits != c.Limits:
		return nil, fmt.Errorf("%w: the ticket was made under another configuration", ErrUnknownSession)
	case len(st.Secret) != suite.hash.Size() || len(st.Transcript) != suite.hash.Size():
		return nil, fmt.Errorf("%w: the ticket's secrets have the wrong size", ErrUnknownSession)
	}
	return srv.session(id, suite, st.Secret, st.Transcript, time.Unix(st.Issued, 0))
}

// session makes a session at epoch 0 from its secret; the epoch began at
// started (the handshake).
func (srv *Server) session(id SessionID, suite Suite, secret, transcript []byte, started time.Time) (*ServerSession, error) {
	keys, err := epochFromSecret(suite, 0, secret, transcript)
	if err != nil {
		return nil, err
	}
	c := &srv.cfg
	s := &ServerSession{
		id: id, endpoint: c.Endpoint, suite: suite, chunkSize: c.ChunkSize, limits: c.Limits,
		signer: c.Identity.Signer, notAfter: srv.notAfter, now: c.Now, policy: c.ClientAuth,
	}
	s.install(keys)
	s.started = started
	return s, nil
}
