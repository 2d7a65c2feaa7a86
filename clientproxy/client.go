package clientproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// ClientOptions configure the protocol client.
type ClientOptions struct {
	// ServerURL is the drm handler's prefix, e.g. http://127.0.0.1:8080/drm.
	ServerURL string
	// Roots are the pinned CAs the server's certificate must chain to.
	Roots *x509.CertPool
	// ServerName is the name the server's certificate must carry; the
	// host of ServerURL when empty.
	ServerName string
	// Endpoint is the endpoint name the server must sign in the handshake
	// (its drm endpoint setting); any when empty.
	Endpoint string
	// Credentials are the device and user credentials the client presents
	// when the server asks (protocol §17). Without the one a server asks
	// for, every request fails, saying which.
	Credentials []protocol.Credential
	// Suites are offered in this order; protocol.DefaultSuites when nil.
	Suites []protocol.Suite
	// HTTPClient carries the requests; a pooled client when nil.
	HTTPClient *http.Client
	// RetryBudget bounds how long one request keeps retrying while the
	// server is unreachable or its origin fails; DefaultRetryBudget when
	// zero.
	RetryBudget time.Duration
	// Renew is what to do when a license is used up and the server offers
	// a renewal (402); Ask answers for RenewAsk (nil: no).
	Renew RenewPolicy
	Ask   func(ctx context.Context, offer protocol.PaymentRequired) bool
	// PlayTimeout is how long a medium may go unread before its next read
	// starts a new play, which the server counts as a view;
	// protocol.DefaultPlayTimeout when zero. Keep it at most the server's.
	PlayTimeout time.Duration
	// VerifyManifest, when set, requires a publisher-signed manifest for
	// every medium and checks every byte against it (protocol §22); it is
	// the chain policy of publishers (keystore.ContentVerifier).
	VerifyManifest func(chain [][]byte) (*x509.Certificate, error)
	Logger         *slog.Logger
}

// Client speaks the caddy-drm protocol to one server and implements
// Source: it runs the handshake on first use, rekeys when the server asks,
// opens a new session when the old one is gone, waits out a server that
// restarts (within the retry budget), and returns only chunks that
// authenticate. It is safe for concurrent use.
type Client struct {
	opts   ClientOptions
	base   string
	http   *http.Client
	logger *slog.Logger
	// now and sleep time the retry budget; tests replace them with a
	// fake clock that sleep advances.
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu    sync.Mutex
	sess  *protocol.ClientSession
	sizes map[string]int64 // media sizes from the catalog
	plays *plays
	// chunkSize is the first session's: every later session must have it.
	chunkSize int

	manifests *manifests // nil: media are not checked against manifests

	// One handshake and one rekey at a time. They are semaphores, not
	// mutexes, so that a caller waiting for another's handshake or rekey
	// still gives up when its own context ends.
	renewing   chan struct{}
	rekeying   chan struct{}
	earlyRekey atomic.Bool // a background rekey is running
}

// NewHTTPClient makes the transport to the server: pooled keep-alive
// connections, HTTP/2 over https, no compression (sealed bytes do not
// compress), and the system roots plus tlsRoots (if any) for https.
func NewHTTPClient(tlsRoots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	t.DisableCompression = true
	if tlsRoots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: tlsRoots}
	}
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// NewClient checks the options and makes a client; no request is sent yet.
func NewClient(opts ClientOptions) (*Client, error) {
	u, err := url.Parse(opts.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q is not an http(s) URL", opts.ServerURL)
	}
	if opts.Roots == nil {
		return nil, errors.New("no pinned root CA")
	}
	if opts.ServerName == "" {
		opts.ServerName = u.Hostname()
	}
	if opts.Suites == nil {
		opts.Suites = protocol.DefaultSuites()
	}
	if opts.RetryBudget <= 0 {
		opts.RetryBudget = DefaultRetryBudget
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(nil)
	}
	c := &Client{
		opts:   opts,
		base:   strings.TrimSuffix(opts.ServerURL, "/") + "/v1/",
		http:   hc,
		logger: opts.Logger,
		now:    time.Now,
		sleep:  sleepCtx,
		sizes:  map[string]int64{},

		renewing: make(chan struct{}, 1),
		rekeying: make(chan struct{}, 1),
	}
	c.plays = newPlays(opts.PlayTimeout, func() time.Time { return c.now() })
	if opts.VerifyManifest != nil {
		c.manifests = newManifests(opts.VerifyManifest)
	}
	return c, nil
}

// Catalog fetches the server's catalog.
func (c *Client) Catalog(ctx context.Context) ([]protocol.MediaInfo, error) {
	var items []protocol.MediaInfo
	_, err := c.do(ctx, "catalog", (*protocol.ClientSession).NewCatalogRequest, func(req *protocol.Request, body []byte) error {
		payload, err := req.OpenReply(body)
		if err != nil {
			return err
		}
		items = nil
		return json.Unmarshal(payload, &items)
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	for _, it := range items {
		c.sizes[it.ID] = it.Size
	}
	c.mu.Unlock()
	return items, nil
}

// ChunkSize is the session's chunk size (it runs the handshake if needed).
func (c *Client) ChunkSize(ctx context.Context) (int, error) {
	s, err := c.do(ctx, "handshake", nil, nil)
	if err != nil {
		return 0, err
	}
	return s.ChunkSize(), nil
}

// ReadChunk fetches, authenticates and returns chunk index of media id, as
// part of the medium's current play. A license used up is renewed as the
// Renew policy says, and the read tried once more.
func (c *Client) ReadChunk(ctx context.Context, id string, index int64) ([]byte, error) {
	if index < 0 {
		return nil, fmt.Errorf("negative chunk index %d", index)
	}
	asked := c.now()
	data, err := c.fetch(ctx, id, index)
	if err == nil {
		return data, nil
	}
	if retry, err := c.renewAfter(ctx, id, asked, err); !retry {
		return nil, err
	}
	return c.fetch(ctx, id, index)
}

// fetch reads chunk index of id as part of the medium's current play,
// checked against its manifest when manifests are required.
func (c *Client) fetch(ctx context.Context, id string, index int64) ([]byte, error) {
	play := c.plays.forRead(id, 0)
	if c.manifests != nil {
		return c.readVerified(ctx, play, id, index)
	}
	return c.readChunk(ctx, play, id, index, -1)
}

// readChunk fetches and authenticates chunk index of id as part of play.
// The medium's size in the chunk must be wantSize if that is not negative
// (its manifest's), and the catalog's if the catalog lists it.
func (c *Client) readChunk(ctx context.Context, play protocol.PlayID, id string, index, wantSize int64) ([]byte, error) {
	var data []byte
	var soon bool
	var used *protocol.Request
	sess, err := c.do(ctx, fmt.Sprintf("chunk %d of %q", index, id), func(s *protocol.ClientSession) *protocol.Request {
		return s.NewChunkRequestFor(play, id, uint64(index))
	}, func(req *protocol.Request, body []byte) error {
		chunk, err := req.OpenChunk(body) // in place: the plaintext takes the ciphertext's bytes
		if err != nil {
			return err
		}
		c.mu.Lock()
		want, known := c.sizes[id]
		c.mu.Unlock()
		if wantSize >= 0 && uint64(wantSize) != chunk.MediaSize {
			return fmt.Errorf("%w: %s is %d bytes in its manifest but %d in chunk %d", protocol.ErrManifestMismatch, id, wantSize, chunk.MediaSize, index)
		}
		if known && uint64(want) != chunk.MediaSize {
			return fmt.Errorf("%w: %s is %d bytes in the catalog but %d in chunk %d", protocol.ErrUnexpectedReply, id, want, chunk.MediaSize, index)
		}
		data, soon, used = chunk.Data, chunk.RekeySoon, req
		return nil
	})
	if err != nil {
		return nil, err
	}
	if soon && c.earlyRekey.CompareAndSwap(false, true) {
		// Rekey ahead of the limit, off the player's path; one at a time.
		go func() {
			defer c.earlyRekey.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.rekey(ctx, sess, used.Epoch()); err != nil {
				c.logger.Warn("early rekey failed; will rekey at the limit", "err", err)
			}
		}()
	}
	return data, nil
}

// Close ends the session on the server, if there is one.
func (c *Client) Close(ctx context.Context) error {
	s := c.current()
	if s == nil {
		return nil
	}
	req := s.NewCloseRequest()
	body, err := c.post(ctx, req.Type().String(), req.Envelope())
	if err == nil {
		_, err = req.OpenReply(body)
	}
	c.drop(s)
	return err
}

func (c *Client) current() *protocol.ClientSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// do runs one exchange — the request build makes, its reply handed to
// open; only a session when build is nil — until it succeeds or its
// failure is final (remedyFor), and returns the session it used. A key
// epoch at its limit is rekeyed, a lost session renewed, a replayed
// sequence number resent; an unreachable server or a failing origin is
// waited out with backoff, for at most the retry budget. what names the
// exchange in the log.
func (c *Client) do(ctx context.Context, what string, build func(*protocol.ClientSession) *protocol.Request, open func(*protocol.Request, []byte) error) (*protocol.ClientSession, error) {
	start := c.now()
	quick, waits := 0, 0
	for {
		s, req, err := c.try(ctx, build, open)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", context.Cause(ctx), err) // the caller gave up
		}
		r := remedyFor(err)
		switch r {
		case giveUp:
			return nil, err
		case wait:
			// The last wait is cut to what is left of the budget, so
			// the last attempt comes as late as the budget allows.
			elapsed := c.now().Sub(start)
			left := c.opts.RetryBudget - elapsed
			if left <= 0 {
				return nil, fmt.Errorf("%w (gave up after %v)", err, elapsed.Round(time.Millisecond))
			}
			d := min(backoff(waits), left)
			// The first wait of a request is news; the rest are detail.
			level := slog.LevelDebug
			if waits == 0 {
				level = slog.LevelInfo
			}
			waits++
			c.logger.Log(ctx, level, "retrying", "what", what, "in", d.Round(time.Millisecond), "err", err)
			if err := c.sleep(ctx, d); err != nil {
				return nil, err
			}
			continue
		}
		if quick++; quick > maxQuickRetries {
			return nil, fmt.Errorf("%w (after %d retries)", err, maxQuickRetries)
		}
		switch r {
		case rekey:
			if rerr := c.rekey(ctx, s, req.Epoch()); rerr != nil {
				if ctx.Err() != nil {
					return nil, rerr // the caller gave up, not the session
				}
				c.logger.Info("rekey failed, starting a new session", "err", rerr)
				c.drop(s)
			}
		case renew:
			c.logger.Info("starting a new session", "what", what, "err", err)
			c.drop(s)
		}
	}
}

// try is one attempt of do: a session (a handshake when there is none),
// then the request and its reply.
func (c *Client) try(ctx context.Context, build func(*protocol.ClientSession) *protocol.Request, open func(*protocol.Request, []byte) error) (*protocol.ClientSession, *protocol.Request, error) {
	s, err := c.session(ctx)
	if err != nil || build == nil {
		return s, nil, err
	}
	req := build(s)
	body, err := c.post(ctx, req.Type().String(), req.Envelope())
	if err != nil {
		return s, req, err
	}
	return s, req, open(req, body)
}

// session returns the current session, running a handshake if none.
func (c *Client) session(ctx context.Context) (*protocol.ClientSession, error) {
	if s := c.current(); s != nil {
		return s, nil
	}
	if err := acquire(ctx, c.renewing); err != nil {
		return nil, err
	}
	defer func() { <-c.renewing }()
	if s := c.current(); s != nil {
		return s, nil // another caller finished the handshake
	}
	cfg := &protocol.ClientConfig{Suites: c.opts.Suites, Endpoint: c.opts.Endpoint, Credentials: c.kinds(),
		VerifyCertificate: keystore.ServerVerifier(c.opts.Roots, c.opts.ServerName)}
	hs, hello, err := cfg.Start()
	if err != nil {
		return nil, err
	}
	reply, err := c.post(ctx, "handshake", hello)
	if err != nil {
		return nil, err
	}
	s, err := hs.Finish(reply)
	if errors.Is(err, protocol.ErrWrongEndpoint) {
		// The certificate is trusted, the site is not the one pinned: the
		// same PKI serves several endpoints.
		return nil, fmt.Errorf("handshake: %w (check --endpoint and --server)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if len(s.CredentialsRequested()) > 0 {
		if err := c.authenticate(ctx, s); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	pinned := c.chunkSize
	if pinned == 0 {
		c.chunkSize = s.ChunkSize()
	}
	c.mu.Unlock()
	if pinned != 0 && pinned != s.ChunkSize() {
		// Offsets computed with the old size would take bytes from the
		// wrong place: fail closed.
		return nil, fmt.Errorf("%w: the server's chunk size changed from %d to %d bytes; restart clientproxy to follow it",
			protocol.ErrUnexpectedReply, pinned, s.ChunkSize())
	}
	c.logger.Info("session opened", "endpoint", s.Endpoint(), "suite", s.Suite(), "chunk_size", s.ChunkSize(),
		"rekey_after_chunks", s.Limits().Chunks, "credentials", s.CredentialsRequested())
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	return s, nil
}

// kinds are the kinds of credential the client holds.
func (c *Client) kinds() []string {
	var kinds []string
	for _, cred := range c.opts.Credentials {
		kinds = append(kinds, cred.Kind)
	}
	return kinds
}

// authenticate presents the credentials the server asked s for, as the
// session's first request. Without them it fails closed, naming what is
// missing; a refusal is final (errors.Is protocol.ErrCredentialRefused).
func (c *Client) authenticate(ctx context.Context, s *protocol.ClientSession) error {
	req, err := s.NewClientAuthRequest(c.opts.Credentials)
	if err != nil {
		return fmt.Errorf("credentials: %w (clientproxy takes them with --device-cert/--device-key, and --user-cert/--user-key or a token: --pkcs11-module)", err)
	}
	reply, err := c.post(ctx, protocol.MsgClientAuth.String(), req.Envelope())
	if err != nil {
		return err
	}
	if _, err := req.OpenReply(reply); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// drop forgets s so the next request runs a new handshake.
func (c *Client) drop(s *protocol.ClientSession) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
}

// acquire takes the semaphore sem, or gives up when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("clientproxy: %w", context.Cause(ctx))
	}
}

// rekey moves s from epoch `from` to the next one, once: callers that
// find the epoch already advanced return at once.
func (c *Client) rekey(ctx context.Context, s *protocol.ClientSession, from uint32) error {
	if err := acquire(ctx, c.rekeying); err != nil {
		return err
	}
	defer func() { <-c.rekeying }()
	if s.Epoch() != from || c.current() != s {
		return nil
	}
	rk, err := s.StartRekey()
	if err != nil {
		return err
	}
	reply, err := c.post(ctx, "rekey", rk.Request().Envelope())
	if err != nil {
		return err
	}
	if err := rk.Finish(reply); err != nil {
		return err
	}
	c.logger.Debug("rekeyed", "epoch", s.Epoch())
	return nil
}

// post sends one protocol message to endpoint and returns the reply body,
// or a *serverError for a refusal.
func (c *Client) post(ctx context.Context, endpoint string, body []byte) ([]byte, error) {
	ctype := "application/octet-stream"
	if endpoint == "handshake" {
		ctype = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err // a *url.Error: it names the endpoint's URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		se := &serverError{endpoint: endpoint, status: resp.StatusCode, err: errors.New("no Drm-Error header")}
		if code := resp.Header.Get("Drm-Error"); code != "" {
			se.err = protocol.ErrorFromCode(code)
		}
		if resp.StatusCode == http.StatusPaymentRequired {
			se.payment = readPaymentRequired(resp)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // keep the connection reusable
		return nil, se
	}
	reply, err := readReply(resp)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the reply: %w", endpoint, err)
	}
	return reply, nil
}

// readReply reads a reply body of at most protocol.MaxReplySize bytes.
// With a Content-Length (which the server always sends) it is one
// allocation of the exact size, which the chunk's plaintext then shares:
// chunks are opened in place.
func readReply(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 {
		if n > protocol.MaxReplySize {
			return nil, fmt.Errorf("reply of %d bytes is larger than %d", n, protocol.MaxReplySize)
		}
		buf := make([]byte, n)
		_, err := io.ReadFull(resp.Body, buf)
		return buf, err
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxReplySize+1))
	if err == nil && len(buf) > protocol.MaxReplySize {
		err = fmt.Errorf("reply larger than %d bytes", protocol.MaxReplySize)
	}
	return buf, err
}

var _ Source = (*Client)(nil)
