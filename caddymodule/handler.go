// Package caddymodule is the caddy-drm Caddy module: the http.handlers.drm
// middleware that serves media from whatever handler follows it (file_server,
// reverse_proxy, …) only through the caddy-drm protocol, and the
// `caddy drm` command.
package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// defaultPrefix is where the protocol's endpoints live by default.
const defaultPrefix = "/drm"

// Handler is the drm middleware. It answers the protocol's endpoints under
// Prefix and refuses every other request on its route, so the raw media of
// the handlers after it are reachable only encrypted, chunk by chunk.
type Handler struct {
	// Endpoint names this drm endpoint in every handshake and session, so
	// a session made at one endpoint is refused at another (two sites that
	// share an identity, say). Use the same name on every node of a
	// cluster. The Caddyfile defaults it to the site's address followed by
	// the prefix ("media.example.com/drm"); in JSON it is required.
	// clientproxy can pin it (--endpoint).
	Endpoint string `json:"endpoint,omitempty"`

	// Prefix is the path under which the protocol's endpoints live
	// ({prefix}/v1/handshake, …/catalog, …/chunk, …/rekey, …/close).
	// Default: "/drm".
	Prefix string `json:"prefix,omitempty"`

	// OriginPath is the path, as the next handler sees it, under which
	// media ids are resolved: media "a/b.flac" is read from
	// {origin_path}/a/b.flac with Range sub-requests. Default: "/".
	OriginPath string `json:"origin_path,omitempty"`

	// CatalogFile is the catalog file under OriginPath (JSON array of
	// {"id","title","duration","content_type"}). Default: "catalog.json".
	// The origin's JSON directory listing, where it has one, completes it.
	CatalogFile string `json:"catalog_file,omitempty"`

	// Certificate and Key are PEM files of the server's identity (the
	// certificate chain, leaf first, and its private key). When both are
	// empty, a development PKI is made on first run in Caddy's data
	// directory (drm/pki), like `tls internal`; clientproxy pins its
	// root.crt.
	Certificate string `json:"certificate,omitempty"`
	Key         string `json:"key,omitempty"`

	// Suites are the accepted cipher suites in order of preference, e.g.
	// "X25519MLKEM768_AES128_GCM_SHA256". Default: protocol.DefaultSuites.
	Suites []string `json:"suites,omitempty"`

	// ChunkSize is the plaintext size of a chunk in bytes. Default 256 KiB.
	ChunkSize int `json:"chunk_size,omitempty"`

	// RekeyAfterChunks, RekeyAfterBytes and RekeyAfterAge limit one key
	// epoch; at whichever comes first the client must rekey. Defaults: 500
	// chunks, 1 GiB, 1 hour.
	RekeyAfterChunks uint32         `json:"rekey_after_chunks,omitempty"`
	RekeyAfterBytes  uint64         `json:"rekey_after_bytes,omitempty"`
	RekeyAfterAge    caddy.Duration `json:"rekey_after_age,omitempty"`

	// SessionIdleTimeout ends sessions unused for this long. Default 10m.
	SessionIdleTimeout caddy.Duration `json:"session_idle_timeout,omitempty"`

	// MaxSessions bounds the sessions in use (a session counts from its
	// first request); new sessions beyond it get 503. Default 100000.
	MaxSessions int `json:"max_sessions,omitempty"`

	// UnusedHandshakesPerAddress is how many handshakes a client address
	// may make whose sessions it does not use (they refill at one a
	// second); past it, handshakes from that address get 503. Sessions
	// used give their handshake back, so many real listeners behind one
	// address are not limited. The address is Caddy's client IP, so it
	// follows trusted_proxies. Default 64.
	UnusedHandshakesPerAddress int `json:"unused_handshakes_per_address,omitempty"`

	// AllowUnprotectedRoutes lets Caddy start although other handlers of
	// the same server can serve files without passing drm (a handle block
	// with file_server beside drm, say). Without it, Provision refuses and
	// names them: they might serve the origin's media in the clear. Set it
	// only when those handlers serve nothing of the origin.
	AllowUnprotectedRoutes bool `json:"allow_unprotected_routes,omitempty"`

	// Require lists the credentials every session must present before it
	// is served (protocol §17): "device", "user" or both. Default: none,
	// clients are anonymous.
	Require []string `json:"require,omitempty"`

	// DeviceCA and UserCA are PEM files of the CAs — roots, and the
	// intermediates clients may leave out — that device and user
	// certificates must chain to. One CA may not be in both: a device
	// certificate would pass as a user.
	DeviceCA []string `json:"device_ca,omitempty"`
	UserCA   []string `json:"user_ca,omitempty"`

	// UserID is how a user is named in logs and licenses: serialNumber
	// (the subject's, as the Citizen Card carries; default), cn, email
	// (the first email SAN) or spki (the hash of the public key).
	UserID string `json:"user_id,omitempty"`

	// CRL are files of full and delta CRLs (DER or PEM) of the device and
	// user CAs, read again when they change. A certificate whose CRL is
	// missing or past its NextUpdate is refused, unless its issuer is in
	// CRLOptional (PEM files of CA certificates).
	CRL         []string `json:"crl,omitempty"`
	CRLOptional []string `json:"crl_optional,omitempty"`

	// BeforeCredentials is what a session is served before its
	// credentials are verified: "catalog" (default) or "nothing".
	BeforeCredentials string `json:"before_credentials,omitempty"`

	// License counts views per user and medium, with 402 when they are
	// used up (protocol §21). Needs Require. Default: media play without
	// limit.
	License *LicenseConfig `json:"license,omitempty"`

	// ContentCA are PEM files of the content CAs whose publishers sign
	// manifests (protocol §22). With them the server checks each medium's
	// manifest ({medium}.manifest at the origin) before handing it out; a
	// manifest that does not verify is logged and withheld.
	ContentCA []string `json:"content_ca,omitempty"`

	// RequireManifest refuses every medium without a valid manifest
	// (404 no-manifest). Needs ContentCA. Default off, until a site has
	// manifests for its media (caddy drm manifest).
	RequireManifest bool `json:"require_manifest,omitempty"`

	// AtRest decrypts media sealed at rest (`caddy drm seal`: {medium}.age
	// at the origin). Default: none; sealed media are then not listed.
	AtRest *AtRestConfig `json:"at_rest,omitempty"`

	credentials *credentialSetup
	manifests   *manifestSetup
	atRest      *atRest
	licenses    *licenses
	endpoints   string                // Prefix + "/v1/"
	cfg         protocol.ServerConfig // what server was made from
	server      *protocol.Server
	state       *poolState
	sessions    SessionStore // state.store
	poolKey     string
	catalog     *catalog
	bufs        *sync.Pool // chunk-sized buffers
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.drm",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, loads (or makes) the identity and joins the
// session store.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.setDefaults()
	suites, err := protocol.ParseSuites(h.Suites)
	if err != nil {
		return err
	}
	if h.Endpoint == "" {
		return errors.New("drm: no endpoint name: set endpoint to the address clients use, e.g. https://media.example.com/drm " +
			"(the Caddyfile sets it from the site's address)")
	}
	if h.RekeyAfterAge < caddy.Duration(time.Second) {
		return fmt.Errorf("drm: rekey_after_age %v is under one second", time.Duration(h.RekeyAfterAge))
	}
	id, err := h.loadIdentity()
	if err != nil {
		return err
	}
	if h.credentials, err = h.setupCredentials(); err != nil {
		return err
	}
	if h.manifests, err = h.setupManifests(); err != nil {
		return err
	}
	if h.atRest, err = h.setupAtRest(); err != nil {
		return err
	}
	if h.licenses, err = h.setupLicenses(ctx); err != nil {
		return err
	}
	cfg := protocol.ServerConfig{
		Endpoint:  h.Endpoint,
		Suites:    suites,
		Identity:  protocol.Identity{Signer: id.Signer, Chain: id.Chain},
		ChunkSize: h.ChunkSize,
		Limits: protocol.EpochLimits{
			Chunks:     h.RekeyAfterChunks,
			Bytes:      h.RekeyAfterBytes,
			AgeSeconds: uint32(time.Duration(h.RekeyAfterAge) / time.Second),
		},
		TicketLifetime: protocol.DefaultTicketLifetime,
	}
	policyKey := ""
	if h.credentials != nil {
		cfg.ClientAuth, policyKey = h.credentials.policy, h.credentials.fingerprint
	}
	h.poolKey = sessionPoolKey(cfg, policyKey, h.SessionIdleTimeout, h.MaxSessions, h.UnusedHandshakesPerAddress)
	st, _, err := sessionPool.LoadOrNew(h.poolKey, func() (caddy.Destructor, error) {
		return newPoolState(cfg.Endpoint, time.Duration(h.SessionIdleTimeout), h.MaxSessions, cfg.TicketLifetime, h.UnusedHandshakesPerAddress), nil
	})
	if err != nil {
		return err
	}
	h.state = st.(*poolState)
	h.sessions = h.state.store
	cfg.Tickets = h.state.tickets
	h.cfg = cfg
	if h.server, err = protocol.NewServer(cfg); err != nil {
		return fmt.Errorf("drm: %w", err)
	}
	h.catalog = &catalog{originPath: h.OriginPath, file: h.CatalogFile}
	if h.atRest != nil {
		h.catalog.onlySealed = h.atRest.require
		h.catalog.sealedSize = func(r *http.Request, next caddyhttp.Handler, id string) (int64, error) {
			_, size, err := h.openSealed(r, next, id)
			return size, err
		}
	}
	// Room for a whole sealed chunk: header, chunk, the most a cipher adds.
	bufSize := protocol.MaxReplySize - protocol.MaxChunkSize + h.ChunkSize
	h.bufs = &sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}
	registerMetrics(ctx)
	return h.checkRoutes(ctx)
}

// checkRoutes refuses a server where other handlers can serve files
// without passing drm (routes.go), unless AllowUnprotectedRoutes.
func (h *Handler) checkRoutes(ctx caddy.Context) error {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok {
		return nil // provisioned outside an http server (tests, tools)
	}
	found, err := exposedHandlers(srv)
	if err != nil {
		return fmt.Errorf("drm: checking the server's routes: %w", err)
	}
	if h.AtRest != nil {
		roots, err := originRoots(srv)
		if err != nil {
			return fmt.Errorf("drm: checking the server's routes: %w", err)
		}
		if err := checkCustody(roots, map[string]string{"at-rest keys": h.AtRest.Keys,
			"at-rest passphrase file": h.AtRest.PassphraseFile, "server key": h.Key}); err != nil {
			return err
		}
	}
	if len(found) == 0 {
		return nil
	}
	if h.AllowUnprotectedRoutes {
		h.logger.Warn("handlers of this server serve requests without passing drm (allow_unprotected_routes)", zap.Strings("handlers", found))
		return nil
	}
	return fmt.Errorf("drm: refusing to start: these handlers of the same server can serve files without passing drm, "+
		"so the media could be served in the clear: %s. Put them behind drm (drm first in the same handle block, or drm for the "+
		"whole site), or, if they serve nothing of the origin, set allow_unprotected_routes", strings.Join(found, "; "))
}

func (h *Handler) setDefaults() {
	if h.Prefix == "" {
		h.Prefix = defaultPrefix
	}
	h.Prefix = "/" + strings.Trim(h.Prefix, "/")
	h.endpoints = strings.TrimSuffix(h.Prefix, "/") + "/v1/"
	if h.OriginPath == "" {
		h.OriginPath = "/"
	}
	if h.CatalogFile == "" {
		h.CatalogFile = "catalog.json"
	}
	if len(h.Suites) == 0 {
		h.Suites = protocol.SuiteNames(protocol.DefaultSuites())
	}
	if h.ChunkSize == 0 {
		h.ChunkSize = protocol.DefaultChunkSize
	}
	if h.RekeyAfterChunks == 0 {
		h.RekeyAfterChunks = protocol.DefaultRekeyChunks
	}
	if h.RekeyAfterBytes == 0 {
		h.RekeyAfterBytes = protocol.DefaultRekeyBytes
	}
	if h.RekeyAfterAge == 0 {
		h.RekeyAfterAge = caddy.Duration(protocol.DefaultRekeyAge)
	}
	if h.SessionIdleTimeout == 0 {
		h.SessionIdleTimeout = caddy.Duration(10 * time.Minute)
	}
	if h.MaxSessions == 0 {
		h.MaxSessions = 100000
	}
	if h.UnusedHandshakesPerAddress == 0 {
		h.UnusedHandshakesPerAddress = 64
	}
	if h.UserID == "" {
		h.UserID = "serialNumber"
	}
	if h.BeforeCredentials == "" {
		h.BeforeCredentials = "catalog"
	}
}

func (h *Handler) loadIdentity() (*keystore.Identity, error) {
	cert, key := h.Certificate, h.Key
	if (cert == "") != (key == "") {
		return nil, errors.New("drm: certificate and key go together")
	}
	if cert == "" {
		files, err := keystore.InitPKI(filepath.Join(caddy.AppDataDir(), "drm", "pki"), keystore.PKIOptions{})
		if err != nil {
			return nil, fmt.Errorf("drm: development PKI: %w", err)
		}
		h.logger.Info("using the development PKI; clients pin its root",
			zap.String("root_ca", files.RootCert))
		cert, key = files.ServerCert, files.ServerKey
	}
	id, err := keystore.LoadIdentity(cert, key)
	if err != nil {
		return nil, fmt.Errorf("drm: %w", err)
	}
	// A certificate every client would refuse is a configuration error:
	// say so now, not at each handshake.
	if err := keystore.CheckServerIdentity(id); err != nil {
		return nil, fmt.Errorf("drm: %s: %w", cert, err)
	}
	return id, nil
}

// Validate checks what only the module knows (protocol.NewServer, in
// Provision, checked the chunk size and the limits).
func (h *Handler) Validate() error {
	switch {
	case h.MaxSessions < 1:
		return errors.New("drm: max_sessions must be positive")
	case h.UnusedHandshakesPerAddress < 1:
		return errors.New("drm: unused_handshakes_per_address must be positive")
	}
	return nil
}

// Cleanup releases this config's hold on the session store and the
// license ledger.
func (h *Handler) Cleanup() error {
	err := h.licenses.cleanup()
	if h.poolKey == "" {
		return err
	}
	_, serr := sessionPool.Delete(h.poolKey)
	return errors.Join(err, serr)
}

// ServeHTTP routes protocol requests and refuses everything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	endpoint, ok := strings.CutPrefix(r.URL.Path, h.endpoints)
	if !ok {
		return h.fail(w, protocol.ErrForbidden)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.failWith(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: %s %s", protocol.ErrMalformed, r.Method, r.URL.Path))
	}
	w.Header().Set("Cache-Control", "no-store")
	switch endpoint {
	case "handshake":
		return h.serveHandshake(w, r)
	case "catalog":
		return h.serveSessionRequest(w, r, next, protocol.MsgCatalog)
	case "chunk":
		return h.serveSessionRequest(w, r, next, protocol.MsgChunk)
	case "rekey":
		return h.serveSessionRequest(w, r, next, protocol.MsgRekey)
	case "close":
		return h.serveSessionRequest(w, r, next, protocol.MsgClose)
	case "client-auth":
		return h.serveSessionRequest(w, r, next, protocol.MsgClientAuth)
	case "renew":
		return h.serveSessionRequest(w, r, next, protocol.MsgRenew)
	case "manifest":
		return h.serveSessionRequest(w, r, next, protocol.MsgManifest)
	}
	return h.failWith(w, http.StatusNotFound, fmt.Errorf("%w: no endpoint %q", protocol.ErrMalformed, endpoint))
}

// readBody reads at most limit bytes of the request body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the body: %v", protocol.ErrMalformed, err)
	}
	return body, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
	_ protocol.TicketKeys         = (*ticketKeyring)(nil)
)
