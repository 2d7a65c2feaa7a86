package clientproxy

// drmServer: an in-process caddy-drm server for the Client's tests, built
// from the real protocol package and answering as caddymodule/endpoints.go
// does (statuses, Drm-Error header), without importing Caddy. Tests can
// refuse, forget, tamper with or hold any request, and wait for what the
// server saw without sleeping.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// drmChunkSize keeps media small: the smallest chunk the protocol allows.
const drmChunkSize = protocol.MinChunkSize

// drmPrefix is where the server's endpoints live: {prefix}/v1/{endpoint}.
const drmPrefix = "/drm"

type drmServer struct {
	URL      string         // ClientOptions.ServerURL
	Roots    *x509.CertPool // the root that signed the server's certificate
	Endpoint string         // the endpoint name the server signs
	srv      *protocol.Server
	done     chan struct{} // closed when the test ends: held requests go on

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced whenever stats change
	hook      hook
	sessions  map[protocol.SessionID]*protocol.ServerSession
	ended     map[protocol.SessionID]bool // closed or forgotten: their tickets are refused
	media     map[string][]byte
	catalog   []protocol.MediaInfo
	stats     drmStats
	opts      drmOptions         // as made, for reconfigure
	identity  *keystore.Identity // the server's
	licenses  *fakeLicenses      // nil: views are not counted
	manifests map[string][]byte  // signed manifests by media id
}

// drmOptions configure a drmServer; zero values take the defaults.
type drmOptions struct {
	ChunkSize  int                        // drmChunkSize
	Limits     protocol.EpochLimits       // unset limits: the largest allowed
	Endpoint   string                     // "test-endpoint"
	ClientAuth *protocol.ClientAuthPolicy // none: clients are anonymous
	Now        func() time.Time           // time.Now
	Suites     []protocol.Suite           // protocol.DefaultSuites()
	Views      uint32                     // views per medium; 0: not counted
	RenewViews uint32                     // views a renewal grants; 0: renewals denied
}

// newPKI makes a development PKI (root, and a server certificate for
// localhost, 127.0.0.1 and ::1) and returns the server's identity and the
// root to pin.
func newPKI(t testing.TB) (*keystore.Identity, *x509.CertPool) {
	t.Helper()
	files, err := keystore.InitPKI(t.TempDir(), keystore.PKIOptions{})
	if err != nil {
		t.Fatalf("InitPKI: %v", err)
	}
	id, err := keystore.LoadIdentity(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	roots, err := keystore.LoadRoots(files.RootCert)
	if err != nil {
		t.Fatalf("LoadRoots: %v", err)
	}
	return id, roots
}

func newDRMServer(t testing.TB, opts drmOptions) *drmServer {
	t.Helper()
	id, roots := newPKI(t)
	if opts.ChunkSize == 0 {
		opts.ChunkSize = drmChunkSize
	}
	if opts.Suites == nil {
		opts.Suites = protocol.DefaultSuites()
	}
	if opts.Endpoint == "" {
		opts.Endpoint = "test-endpoint"
	}
	l := &opts.Limits
	if l.Chunks == 0 {
		l.Chunks = 1<<32 - 1
	}
	if l.Bytes == 0 {
		l.Bytes = protocol.MaxEpochBytes
	}
	if l.AgeSeconds == 0 {
		l.AgeSeconds = 1<<32 - 1
	}
	srv, err := protocol.NewServer(protocol.ServerConfig{
		Endpoint:   opts.Endpoint,
		Suites:     opts.Suites,
		Identity:   protocol.Identity{Signer: id.Signer, Chain: id.Chain},
		ChunkSize:  opts.ChunkSize,
		Limits:     opts.Limits,
		Tickets:    newTicketKey(),
		Now:        opts.Now,
		ClientAuth: opts.ClientAuth,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &drmServer{
		opts:     opts,
		identity: id,
		Roots:    roots,
		Endpoint: opts.Endpoint,
		srv:      srv,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		sessions: map[protocol.SessionID]*protocol.ServerSession{},
		ended:    map[protocol.SessionID]bool{},
		media:    map[string][]byte{},
		stats:    drmStats{requests: map[string]int{}, refusals: map[string]int{}},
	}
	if opts.Views > 0 {
		s.licenses = newFakeLicenses(opts.Views, opts.RenewViews)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(s.done) }) // runs first: held requests end
	s.URL = ts.URL + drmPrefix
	return s
}

// add publishes a medium of size pseudo-random bytes and returns them.
func (s *drmServer) add(id string, size int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := mediaBytes(size, len(s.media))
	s.media[id] = b
	s.catalog = append(s.catalog, protocol.MediaInfo{ID: id, Title: strings.ToUpper(id), Size: int64(size), ContentType: "audio/mpeg"})
	return b
}

// setCatalogSize makes the catalog announce size for id, whatever the
// medium's real size (which chunks carry).
func (s *drmServer) setCatalogSize(id string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.catalog {
		if s.catalog[i].ID == id {
			s.catalog[i].Size = size
		}
	}
}

func (s *drmServer) setHook(h hook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

// forgetAll drops every session, as a server restart would.
func (s *drmServer) forgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.sessions {
		s.ended[id] = true
	}
	clear(s.sessions)
	s.stats.sessions = 0
	s.notifyLocked()
}

// snapshot returns a copy of what the server saw so far.
func (s *drmServer) snapshot() drmStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.clone()
}

// await blocks until cond holds for the server's stats (checked after
// every change) or testDeadline passes.
func (s *drmServer) await(t *testing.T, what string, cond func(drmStats) bool) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, changed := cond(s.stats), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; server saw %+v", what, s.snapshot())
		}
	}
}

func (s *drmServer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// endpoints maps the session endpoints to the message type they take.
var endpoints = map[string]protocol.MessageType{
	protocol.MsgCatalog.String():    protocol.MsgCatalog,
	protocol.MsgChunk.String():      protocol.MsgChunk,
	protocol.MsgRekey.String():      protocol.MsgRekey,
	protocol.MsgClose.String():      protocol.MsgClose,
	protocol.MsgClientAuth.String(): protocol.MsgClientAuth,
	protocol.MsgRenew.String():      protocol.MsgRenew,
	protocol.MsgManifest.String():   protocol.MsgManifest,
}

func (s *drmServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint, ok := strings.CutPrefix(r.URL.Path, drmPrefix+"/v1/")
	_, known := endpoints[endpoint]
	if !ok || r.Method != http.MethodPost || (!known && endpoint != "handshake") {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxHandshakeSize+1))
	if err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("%w: %v", protocol.ErrMalformed, err))
		return
	}

	s.mu.Lock()
	s.stats.requests[endpoint]++
	n, h := s.stats.requests[endpoint], s.hook
	s.notifyLocked()
	s.mu.Unlock()
	var f fault
	if h != nil {
		f = h(endpoint, n)
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-s.done:
		case <-r.Context().Done():
			return
		}
	}
	if f.refuse != nil || f.status != 0 {
		s.fail(w, f.status, f.refuse)
		return
	}
	if f.forget {
		if info, err := protocol.PeekRequest(body); err == nil {
			s.mu.Lock()
			delete(s.sessions, info.Session)
			s.ended[info.Session] = true
			s.stats.sessions = len(s.sessions)
			s.mu.Unlock()
		}
	}

	var reply []byte
	var status int
	if endpoint == "handshake" {
		reply, status, err = s.handshake(body)
	} else {
		reply, status, err = s.sessionRequest(endpoint, body)
	}
	if err != nil {
		s.fail(w, status, err)
		return
	}
	if f.tamper != nil {
		reply = f.tamper(reply)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.Write(reply)
}

func (s *drmServer) handshake(body []byte) ([]byte, int, error) {
	hs, reply, err := s.srv.Accept(body)
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.handshakes++
	s.stats.suites = append(s.stats.suites, hs.Suite.Name())
	s.notifyLocked()
	return reply, 0, nil
}

// sessionRequest authenticates and answers a request, as
// caddymodule's serveSessionRequest does.
func (s *drmServer) sessionRequest(endpoint string, body []byte) ([]byte, int, error) {
	if len(body) > protocol.MaxRequestSize {
		return nil, http.StatusBadRequest, fmt.Errorf("%w: request of %d bytes", protocol.ErrMalformed, len(body))
	}
	info, err := protocol.PeekRequest(body)
	if err != nil {
		return nil, 0, err
	}
	id, typ := info.Session, info.Type
	if want := endpoints[endpoint]; typ != want {
		return nil, 0, fmt.Errorf("%w: %s message sent to the %s endpoint", protocol.ErrWrongMessage, typ, want)
	}
	sess, a, err := s.open(info, body)
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	s.stats.accepted = append(s.stats.accepted, accepted{typ: typ, session: id, epoch: a.Epoch()})
	s.notifyLocked()
	s.mu.Unlock()

	var reply []byte
	switch typ {
	case protocol.MsgChunk:
		c := a.Chunk()
		s.mu.Lock()
		data, ok := s.media[c.MediaID]
		s.mu.Unlock()
		if !ok {
			return nil, http.StatusNotFound, fmt.Errorf("%w: %q", protocol.ErrNotFound, c.MediaID)
		}
		start, end, ok := protocol.ChunkSpan(c.Index, uint64(len(data)), sess.ChunkSize())
		if !ok {
			return nil, http.StatusRequestedRangeNotSatisfiable, fmt.Errorf("%w: chunk %d of %s", protocol.ErrOutOfRange, c.Index, c.MediaID)
		}
		if err := s.charge(c); err != nil {
			return nil, 0, err
		}
		reply, err = sess.SealChunk(nil, a, uint64(len(data)), data[start:end])
	case protocol.MsgCatalog:
		s.mu.Lock()
		js, jerr := json.Marshal(s.catalog)
		s.mu.Unlock()
		if jerr != nil {
			return nil, http.StatusInternalServerError, jerr
		}
		reply, err = sess.SealReply(a, js)
	case protocol.MsgRekey:
		if reply, err = sess.Rekey(a); err == nil {
			s.mu.Lock()
			s.stats.rekeys++
			s.notifyLocked()
			s.mu.Unlock()
		}
	case protocol.MsgClose:
		s.mu.Lock()
		delete(s.sessions, id)
		s.ended[id] = true
		s.stats.sessions = len(s.sessions)
		s.stats.closes++
		s.notifyLocked()
		s.mu.Unlock()
		reply, err = sess.SealReply(a, nil)
	case protocol.MsgClientAuth:
		reply, err = sess.Authenticate(a)
	case protocol.MsgManifest:
		s.mu.Lock()
		signed, ok := s.manifests[a.MediaID()]
		s.mu.Unlock()
		if !ok {
			return nil, 0, fmt.Errorf("%w: %s", protocol.ErrNoManifest, a.MediaID())
		}
		reply, err = sess.SealManifest(a, signed)
	case protocol.MsgRenew:
		var rn protocol.Renewal
		if rn, err = s.renew(a.MediaID()); err == nil {
			reply, err = sess.SealRenewal(a, rn)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	return reply, 0, nil
}

// open finds the session a request names, or resumes it from the ticket
// the request carries, as caddymodule's Handler.open does.
func (s *drmServer) open(info protocol.RequestInfo, body []byte) (*protocol.ServerSession, *protocol.Accepted, error) {
	s.mu.Lock()
	sess, ok := s.sessions[info.Session]
	ended := s.ended[info.Session]
	s.mu.Unlock()
	if ok {
		a, err := sess.OpenRequest(body)
		return sess, a, err
	}
	if info.Ticket == nil || ended {
		return nil, nil, protocol.ErrUnknownSession
	}
	sess, err := s.srv.Resume(info.Ticket, info.Session)
	if err != nil {
		return nil, nil, err
	}
	a, err := sess.OpenRequest(body)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if live, ok := s.sessions[info.Session]; ok {
		a, err := live.OpenRequest(body)
		return live, a, err
	}
	s.sessions[info.Session] = sess
	s.stats.sessions = len(s.sessions)
	s.notifyLocked()
	return sess, a, nil
}

// fail refuses a request the way caddymodule's Handler.fail does: the
// protocol's status (or status, when set) and a Drm-Error header "code:
// reason". Without err it sends a bare status, as a proxy in front of the
// server might.
func (s *drmServer) fail(w http.ResponseWriter, status int, err error) {
	code := ""
	if err != nil {
		var st int
		var reason string
		st, code, reason = protocol.Refusal(err)
		w.Header().Set("Drm-Error", code+": "+reason)
		if status == 0 {
			status = st
		}
	}
	s.mu.Lock()
	s.stats.refusals[code]++
	s.notifyLocked()
	s.mu.Unlock()
	var pe *paymentError
	if errors.As(err, &pe) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(pe.body)
		return
	}
	http.Error(w, http.StatusText(status), status)
}

// ticketKey is a fixed ticket key: the fake server never rotates.
type ticketKey [32]byte

func newTicketKey() *ticketKey {
	var k ticketKey
	copy(k[:], mediaBytes(32, 99))
	return &k
}

func (k *ticketKey) Current() (uint32, [32]byte) { return 1, *k }

func (k *ticketKey) Lookup(id uint32) ([32]byte, bool) { return *k, id == 1 }

// mediaBytes returns n deterministic bytes that differ between seeds.
func mediaBytes(n, seed int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// fakeClock is a settable time for the server's epoch ages.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newDRMClient makes a Client of s that pins s's root, with the
// production HTTP transport; mod may change the options first.
func newDRMClient(t testing.TB, s *drmServer, mod ...func(*ClientOptions)) *Client {
	t.Helper()
	opts := ClientOptions{ServerURL: s.URL, Roots: s.Roots}
	for _, m := range mod {
		m(&opts)
	}
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.http.CloseIdleConnections)
	// The retry budget runs on a clock the waits advance: a test of
	// retries takes no real time.
	clock := &retryClock{t: time.Now()}
	c.now, c.sleep = clock.now, clock.sleep
	return c
}

// retryClock is the client's clock in tests: sleeping advances it at once.
type retryClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *retryClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *retryClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}
