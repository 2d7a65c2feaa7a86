package caddymodule

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// Publisher-signed manifests (protocol §22). The manifest of medium
// "a/b.flac" is the file "a/b.flac.manifest" next to it at the origin,
// read with a sub-request like the medium. The server hands it to clients
// sealed; with content_ca it checks it first (a manifest that does not
// verify is logged and treated as missing), and with require_manifest a
// medium without a valid manifest is not served at all.

const (
	manifestSuffix   = ".manifest"
	manifestTTL      = 30 * time.Second // read again at most this often
	maxManifestBytes = 8 << 20
)

// manifestSetup is what Provision builds from the manifest options.
type manifestSetup struct {
	verify  func(chain [][]byte) (*x509.Certificate, error) // nil: not checked here
	require bool

	mu    sync.Mutex
	cache map[string]manifestEntry
}

type manifestEntry struct {
	signed  []byte // nil: none (or none valid)
	err     error  // why not, for the log
	fetched time.Time
}

func (h *Handler) setupManifests() (*manifestSetup, error) {
	if h.RequireManifest && len(h.ContentCA) == 0 {
		return nil, errors.New("drm: require_manifest needs content_ca: the server refuses media whose manifest it cannot check")
	}
	m := &manifestSetup{require: h.RequireManifest, cache: map[string]manifestEntry{}}
	if len(h.ContentCA) > 0 {
		pool := x509.NewCertPool()
		for _, f := range h.ContentCA {
			ders, err := keystore.LoadCertificates(f)
			if err != nil {
				return nil, fmt.Errorf("drm: content_ca: %w", err)
			}
			for _, der := range ders {
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, fmt.Errorf("drm: content_ca %s: %w", f, err)
				}
				pool.AddCert(cert)
			}
		}
		m.verify = keystore.ContentVerifier(pool)
	}
	return m, nil
}

// manifest returns the signed manifest of item, reading it from the origin
// when the cached one is older than manifestTTL. It returns ErrNoManifest
// when the origin has none or (with content_ca) none that verifies for
// this medium, and logs why.
func (h *Handler) manifest(r *http.Request, next caddyhttp.Handler, item catalogItem) ([]byte, error) {
	ms := h.manifests
	ms.mu.Lock()
	e, ok := ms.cache[item.ID]
	ms.mu.Unlock()
	if !ok || time.Since(e.fetched) >= manifestTTL {
		e = h.readManifest(r, next, item)
		ms.mu.Lock()
		if len(ms.cache) >= maxCatalogEntries {
			clear(ms.cache) // bounded by the catalog's size anyway
		}
		ms.cache[item.ID] = e
		ms.mu.Unlock()
	}
	if e.signed == nil {
		// %v: why the manifest was refused (a certificate's public reason,
		// say) is the log's, not the client's.
		return nil, fmt.Errorf("%w: %s: %v", protocol.ErrNoManifest, item.ID, e.err)
	}
	return e.signed, nil
}

func (h *Handler) readManifest(r *http.Request, next caddyhttp.Handler, item catalogItem) manifestEntry {
	e := manifestEntry{fetched: time.Now()}
	status, _, body, err := fetchWhole(r, next, originPathFor(h.OriginPath, item.ID+manifestSuffix), "", maxManifestBytes)
	switch {
	case err != nil:
		e.err = err
	case status != http.StatusOK:
		e.err = fmt.Errorf("the origin answered %d for %s", status, item.ID+manifestSuffix)
	case h.manifests.verify == nil:
		e.signed = body
	default:
		m, err := protocol.OpenManifest(body, h.manifests.verify)
		switch {
		case err != nil:
			e.err = err
		case m.ID != item.ID || m.Size != item.Size:
			e.err = fmt.Errorf("the manifest describes %q of %d bytes, the catalog %q of %d", m.ID, m.Size, item.ID, item.Size)
		default:
			e.signed = body
		}
		if e.err != nil {
			h.logger.Error("manifest refused", zap.String("media", item.ID), zap.Error(e.err))
		}
	}
	return e
}

// serveManifest answers a manifest request with the medium's signed
// manifest, sealed.
func (h *Handler) serveManifest(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, sess *protocol.ServerSession, req *protocol.Accepted) error {
	item, err := h.catalog.lookup(r, next, req.MediaID())
	if err != nil {
		return h.fail(w, err)
	}
	signed, err := h.manifest(r, next, item)
	if err != nil {
		return h.fail(w, err)
	}
	reply, err := sess.SealManifest(req, signed)
	if err != nil {
		return h.fail(w, err)
	}
	return h.writeBinary(w, reply)
}

// checkManifest refuses a chunk of a medium without a valid manifest
// when the site requires manifests.
func (h *Handler) checkManifest(r *http.Request, next caddyhttp.Handler, item catalogItem) error {
	if !h.manifests.require {
		return nil
	}
	_, err := h.manifest(r, next, item)
	return err
}
