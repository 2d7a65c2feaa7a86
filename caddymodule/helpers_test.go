package caddymodule

// Shared helpers of the package's tests: a provisioned Handler with a real
// identity, an httptest server that handles errors the way Caddy does, a
// recording transport, raw protocol sessions and envelopes for
// malformed-input tests, and media of edge sizes. The fake origins (the
// `next` handler) are in helpers_origin_test.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/clientproxy"
	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// testChunkSize keeps media small: the smallest chunk the protocol allows.
const testChunkSize = protocol.MinChunkSize

// testRetryBudget keeps clients from waiting out the failures these tests
// make on purpose (clientproxy's own tests cover the retries).
const testRetryBudget = 200 * time.Millisecond

// prefixSeq makes every test handler's prefix unique, so that handlers of
// different tests never share a session store through the usage pool
// (whose key includes the prefix).
var prefixSeq atomic.Int64

func uniquePrefix() string { return fmt.Sprintf("/drm-t%d", prefixSeq.Add(1)) }

// newPKI makes a development PKI in a temporary directory.
func newPKI(t testing.TB) keystore.Files {
	t.Helper()
	files, err := keystore.InitPKI(t.TempDir(), keystore.PKIOptions{})
	if err != nil {
		t.Fatalf("InitPKI: %v", err)
	}
	return files
}

// provision provisions and validates h as Caddy would (with an endpoint
// name when h has none), and cleans it up when the test ends. The handler's logger is silenced.
func provision(t testing.TB, h *Handler) error {
	t.Helper()
	if h.Endpoint == "" {
		h.Endpoint = "http://drm.test" + h.Prefix // the Caddyfile's default, for a handler made in Go
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	err := h.Provision(ctx)
	if h.poolKey != "" {
		t.Cleanup(func() {
			if err := h.Cleanup(); err != nil {
				t.Errorf("Cleanup: %v", err)
			}
		})
	}
	if err != nil {
		return err
	}
	h.logger = zap.NewNop()
	return h.Validate()
}

// caddyLike serves h the way a Caddy server does: the handler's error
// becomes the response status (that of its HandlerError, 500 otherwise),
// and the headers set before the error stay.
func caddyLike(h *Handler, next caddyhttp.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h.ServeHTTP(w, r, next)
		if err == nil {
			return
		}
		status := http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
		w.WriteHeader(status)
	})
}

// exchange is one request and its response as a client saw them.
type exchange struct {
	Method, Path string
	Status       int
	Header       http.Header
}

// recorder is an http.RoundTripper that keeps every exchange.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []exchange
}

func (rt *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if err == nil {
		rt.mu.Lock()
		rt.log = append(rt.log, exchange{req.Method, req.URL.Path, resp.StatusCode, resp.Header.Clone()})
		rt.mu.Unlock()
	}
	return resp, err
}

func (rt *recorder) exchanges() []exchange {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.log)
}

// count returns how many exchanges went to endpoint with the given status
// (any status when status is 0).
func (rt *recorder) count(endpoint string, status int) int {
	n := 0
	for _, e := range rt.exchanges() {
		if strings.HasSuffix(e.Path, "/v1/"+endpoint) && (status == 0 || e.Status == status) {
			n++
		}
	}
	return n
}

// env is a provisioned handler behind an httptest server.
type env struct {
	h     *Handler
	next  *countingHandler
	srv   *httptest.Server
	rec   *recorder
	http  *http.Client
	roots *x509.CertPool
	url   string // the handler's prefix URL
}

// countingHandler wraps next and counts its calls.
type countingHandler struct {
	next  caddyhttp.Handler
	calls atomic.Int64
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	c.calls.Add(1)
	return c.next.ServeHTTP(w, r)
}

// newEnv provisions a handler (chunk size testChunkSize, a fresh PKI, a
// unique prefix, then mutate) in front of next and serves it.
func newEnv(t testing.TB, next caddyhttp.Handler, mutate func(*Handler)) *env {
	t.Helper()
	pki := newPKI(t)
	h := &Handler{
		Prefix:      uniquePrefix(),
		Certificate: pki.ServerCert,
		Key:         pki.ServerKey,
		ChunkSize:   testChunkSize,
	}
	if mutate != nil {
		mutate(h)
	}
	if err := provision(t, h); err != nil {
		t.Fatalf("provision: %v", err)
	}
	roots, err := keystore.LoadRoots(pki.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingHandler{next: next}
	srv := httptest.NewServer(caddyLike(h, counting))
	t.Cleanup(srv.Close)
	rec := &recorder{base: srv.Client().Transport}
	return &env{
		h:     h,
		next:  counting,
		srv:   srv,
		rec:   rec,
		http:  &http.Client{Transport: rec, Timeout: 30 * time.Second},
		roots: roots,
		url:   srv.URL + h.Prefix,
	}
}

// fakeStoreClock puts the handler's session store on a fake clock; call it
// before the first handshake, so that every session's last use is on that
// clock. The store's janitor is stopped first (its real-time ticks would
// read the clock concurrently with its injection); the expiry these tests
// check is the store's own, Get refusing an expired session. The store is
// the env's alone: its pool key holds the env's unique prefix.
func (e *env) fakeStoreClock(t testing.TB) *fakeClock {
	t.Helper()
	m, ok := e.h.sessions.(*memoryStore)
	if !ok {
		t.Fatalf("the session store is a %T, not a *memoryStore", e.h.sessions)
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("fakeStoreClock after %d handshakes", n)
	}
	if err := m.Destruct(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the janitor did not stop")
	}
	clock := newFakeClock()
	m.now = clock.now
	return clock
}

// client makes a clientproxy.Client of the server, over the recording
// transport.
func (e *env) client(t testing.TB) *clientproxy.Client {
	t.Helper()
	c, err := clientproxy.NewClient(clientproxy.ClientOptions{ServerURL: e.url, Roots: e.roots, HTTPClient: e.http, RetryBudget: testRetryBudget})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// post sends body to endpoint (relative to the prefix's /v1/) and returns
// the response with its body read.
func (e *env) post(t testing.TB, endpoint string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return e.do(t, http.MethodPost, e.url+"/v1/"+endpoint, body, hdr...)
}

func (e *env) do(t testing.TB, method, url string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, b
}

// clientConfig is a protocol client that pins the env's root.
func (e *env) clientConfig(suites []protocol.Suite) *protocol.ClientConfig {
	if suites == nil {
		suites = protocol.DefaultSuites()
	}
	return &protocol.ClientConfig{Suites: suites, VerifyCertificate: keystore.ServerVerifier(e.roots, "127.0.0.1")}
}

// handshake runs a raw handshake and returns the client's session, which
// the server does not hold yet (its first request will bring it, with its
// ticket).
func (e *env) handshake(t testing.TB) *protocol.ClientSession {
	t.Helper()
	hs, hello, err := e.clientConfig(nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.post(t, "handshake", hello)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("handshake: %s, Drm-Error %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	s, err := hs.Finish(body)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return s
}

// session runs a raw handshake and a first (catalog) request, which puts
// the session in the store and ends the client's sending of its ticket:
// a session in use, whose requests are plain envelopes.
func (e *env) session(t testing.TB) *protocol.ClientSession {
	t.Helper()
	s := e.handshake(t)
	req := s.NewCatalogRequest()
	resp, body := e.post(t, "catalog", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %s, Drm-Error %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if _, err := req.OpenReply(body); err != nil {
		t.Fatalf("first request: %v", err)
	}
	return s
}

// wantRefusal checks a refused request: the status, and a Drm-Error header
// whose code is code.
func wantRefusal(t testing.TB, what string, resp *http.Response, status int, code string) {
	t.Helper()
	de := resp.Header.Get("Drm-Error")
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d (Drm-Error %q)", what, resp.StatusCode, status, de)
	}
	if got, _, _ := strings.Cut(de, ":"); got != code {
		t.Errorf("%s: Drm-Error %q, want code %q", what, de, code)
	}
}

// mediaBytes returns n deterministic bytes that differ between seeds.
func mediaBytes(n int, seed byte) []byte {
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

// readAll reads every chunk of id, a medium of size bytes, through c.
// It calls t.Fatal, so only the test's goroutine may call it; others call
// readMedium.
func readAll(t testing.TB, c *clientproxy.Client, id string, size int) []byte {
	t.Helper()
	out, err := readMedium(c, id, size)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readMedium reads every chunk of id, a medium of size bytes, through c.
func readMedium(c *clientproxy.Client, id string, size int) ([]byte, error) {
	ctx := context.Background()
	cs, err := c.ChunkSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("ChunkSize: %w", err)
	}
	n := max(1, (size+cs-1)/cs)
	var out []byte
	for i := range n {
		chunk, err := c.ReadChunk(ctx, id, int64(i))
		if err != nil {
			return nil, fmt.Errorf("%s chunk %d of %d: %w", id, i, n, err)
		}
		out = append(out, chunk...)
	}
	return out, nil
}

// newServerFor serves an already provisioned handler in front of next.
func newServerFor(t testing.TB, h *Handler, next caddyhttp.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(caddyLike(h, next))
	t.Cleanup(srv.Close)
	return srv
}

// clientFor makes a client of the server at url that pins roots.
func clientFor(t testing.TB, url string, roots *x509.CertPool) *clientproxy.Client {
	t.Helper()
	c, err := clientproxy.NewClient(clientproxy.ClientOptions{ServerURL: url, Roots: roots, RetryBudget: testRetryBudget})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wireCode is the Drm-Error code the handler sends for err. Tests compare
// codes rather than the package's sentinels, so that they keep working when
// the sentinels move (e.g. into the protocol package).
func wireCode(err error) string {
	if err == nil {
		return ""
	}
	if code := protocol.ErrorCode(err); code != "" {
		return code
	}
	return "internal"
}

// edgeSizes are the media sizes around chunk boundaries.
func edgeSizes(cs int) map[string]int {
	return map[string]int{
		"empty.flac":     0,
		"one.flac":       1,
		"short.flac":     cs - 1,
		"exact.flac":     cs,
		"plus-one.flac":  cs + 1,
		"multi/long.mp3": 3*cs + 7,
	}
}

func edgeFiles(cs int) map[string][]byte {
	files := map[string][]byte{}
	i := byte(0)
	for id, n := range edgeSizes(cs) {
		files[id] = mediaBytes(n, i)
		i++
	}
	return files
}

// firstDiff is the index of the first byte where a and b differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// handshakeBody is a fresh, valid ClientHello.
func handshakeBody(t testing.TB, e *env) []byte {
	t.Helper()
	_, hello, err := e.clientConfig(nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	return hello
}

// flip returns a copy of b with byte i xor-ed with x.
func flip(b []byte, i int, x byte) []byte {
	c := bytes.Clone(b)
	if i < 0 {
		i += len(c)
	}
	c[i] ^= x
	return c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// envelopeFor builds an envelope header for an arbitrary session id,
// followed by junk.
func envelopeFor(t protocol.MessageType, id []byte, epoch uint32, seq uint64, rest []byte) []byte {
	b := append([]byte{1, byte(t)}, id...) // version 1
	b = binary.BigEndian.AppendUint32(b, epoch)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, rest...)
}
