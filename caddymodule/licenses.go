package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/licensing"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// LicenseConfig counts views per user and medium (protocol §21): a play
// costs a view the first time the server sees its play id, committed to
// the store before its first chunk goes out; a license used up or expired
// answers 402, which a renewal may lift. It needs client credentials
// (require): a license belongs to the verified user, or to the device
// when the site authenticates devices only, never to a session.
type LicenseConfig struct {
	// Views is how many views a new license holds. Default 5. A medium's
	// catalog entry may override it ("license": {"views": N}) or make the
	// medium free ("license": {"free": true}).
	Views uint32 `json:"views,omitempty"`

	// ExpireAfter ends a license this long after its first play (and
	// again this long after each renewal). Default: never.
	ExpireAfter caddy.Duration `json:"expire_after,omitempty"`

	// StoreRaw is the license store, a drm.license_stores module.
	// Default: bbolt in Caddy's data directory (drm/licenses.db).
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=drm.license_stores inline_key=backend"`

	// Renew is who decides renewals: "auto" (grant RenewViews), "deny"
	// (default) or "webhook" (POST to Webhook; a timeout, an error or an
	// answer that does not parse denies).
	Renew string `json:"renew,omitempty"`
	// RenewViews is what an automatic renewal grants. Default: Views.
	RenewViews uint32 `json:"renew_views,omitempty"`
	// Webhook is the URL renew "webhook" asks, and WebhookTimeout how long
	// it waits for the answer (default 5s).
	Webhook        string         `json:"webhook,omitempty"`
	WebhookTimeout caddy.Duration `json:"webhook_timeout,omitempty"`

	// Concurrent, if positive, is how many plays one user may have open at
	// once, across sessions and devices; the next is refused with 409
	// too-many-plays until one idles past the play timeout.
	Concurrent int `json:"concurrent,omitempty"`

	// PlayTimeout ends a play idle this long: its play id then costs a new
	// view. Default 5m (clientproxy's --play-timeout must not exceed it).
	PlayTimeout caddy.Duration `json:"play_timeout,omitempty"`

	// PlayBound ends a play that has fetched more than this many times the
	// medium's size, so that one play held open is not free listening.
	// Default 2.
	PlayBound float64 `json:"play_bound,omitempty"`
}

// maxWebhookTimeout bounds how long a renewal may wait for the webhook:
// the listener's player (and clientproxy's request) waits meanwhile.
const maxWebhookTimeout = 30 * time.Second

// licensePool holds one ledger — the open plays, in memory — per store and
// policy, and the store's handle, across reloads: a reload must neither
// forget which plays are open nor block on bbolt's file lock.
var licensePool = caddy.NewUsagePool()

// ledgerHandle is a pooled ledger and the store it owns.
type ledgerHandle struct {
	ledger *licensing.Ledger
	store  licensing.Store
}

// Destruct flushes the open plays, then closes the store.
func (l *ledgerHandle) Destruct() error {
	return errors.Join(l.ledger.Close(), l.store.Close())
}

// licenses is what Provision builds from a LicenseConfig.
type licenses struct {
	// realm qualifies media ids in license keys: sites sharing a store
	// (the default one, in Caddy's data directory) have their own
	// licenses even for media of the same name.
	realm   string
	terms   licensing.Terms
	ledger  *licensing.Ledger
	poolKey string
}

// setupLicenses opens (or joins) the store and ledger of the config.
func (h *Handler) setupLicenses(ctx caddy.Context) (*licenses, error) {
	c := h.License
	if c == nil {
		return nil, nil
	}
	if h.credentials == nil {
		return nil, errors.New("drm: license needs require (user, or device): a license belongs to a verified user or device, never to a session")
	}
	if c.Views == 0 {
		c.Views = 5
	}
	if c.RenewViews == 0 {
		c.RenewViews = c.Views
	}
	if c.Renew == "" {
		c.Renew = "deny"
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = caddy.Duration(5 * time.Second)
	}
	if c.WebhookTimeout > caddy.Duration(maxWebhookTimeout) {
		return nil, fmt.Errorf("drm: license webhook timeout %v is over %v: the player waits for it", time.Duration(c.WebhookTimeout), maxWebhookTimeout)
	}
	if c.PlayTimeout == 0 {
		c.PlayTimeout = caddy.Duration(protocol.DefaultPlayTimeout)
	}
	var approver licensing.Approver
	switch c.Renew {
	case "auto":
		approver = licensing.Auto{Views: c.RenewViews}
	case "deny":
		approver = licensing.Deny{}
	case "webhook":
		if c.Webhook == "" {
			return nil, errors.New("drm: license renew webhook needs a URL")
		}
		approver = licensing.Webhook{URL: c.Webhook, Timeout: time.Duration(c.WebhookTimeout)}
	default:
		return nil, fmt.Errorf("drm: license renew %q: want auto, deny or webhook", c.Renew)
	}
	switch {
	case c.Concurrent < 0:
		return nil, errors.New("drm: license concurrent must not be negative")
	case c.PlayTimeout < caddy.Duration(time.Second):
		return nil, fmt.Errorf("drm: license play_timeout %v is under one second", time.Duration(c.PlayTimeout))
	case c.PlayBound != 0 && c.PlayBound < 1: // 0: licensing's default
		return nil, fmt.Errorf("drm: license play_bound %v: a play must be allowed to read its medium once", c.PlayBound)
	}
	var store LicenseStore = &BoltLicenseStore{}
	if c.StoreRaw != nil {
		mod, err := ctx.LoadModule(c, "StoreRaw")
		if err != nil {
			return nil, fmt.Errorf("drm: license store: %w", err)
		}
		store = mod.(LicenseStore)
	} else if err := store.(*BoltLicenseStore).Provision(ctx); err != nil {
		return nil, err
	}
	policy := licensing.Policy{PlayTimeout: time.Duration(c.PlayTimeout), Bound: c.PlayBound, Concurrent: c.Concurrent}
	// One ledger per store and policy; a config that changes either gets
	// its own (and waits for the old one's handle only if the store is
	// the same file: bbolt allows one).
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%+v|%s|%d|%s|%v", store.StoreKey(), policy, c.Renew, c.RenewViews, c.Webhook, c.WebhookTimeout))
	poolKey := hex.EncodeToString(sum[:])
	v, _, err := licensePool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		st, err := openShared(store)
		if err != nil {
			return nil, err
		}
		return &ledgerHandle{ledger: licensing.NewLedger(st, policy, approver, nil), store: st}, nil
	})
	if err != nil {
		return nil, err
	}
	h.logger.Info("counting views", zap.Uint32("views", c.Views), zap.String("store", store.StoreKey()),
		zap.String("renew", c.Renew), zap.Int("concurrent", c.Concurrent), zap.Duration("play_timeout", time.Duration(c.PlayTimeout)))
	return &licenses{
		realm:   strings.TrimSuffix(h.Endpoint, "/") + "/",
		terms:   licensing.Terms{Views: c.Views, ExpireAfter: time.Duration(c.ExpireAfter)},
		ledger:  v.(*ledgerHandle).ledger,
		poolKey: poolKey,
	}, nil
}

// storePool shares a store between ledgers of different policies (a
// reload that changes the policy): the store closes with its last user.
var storePool = caddy.NewUsagePool()

type sharedStore struct {
	licensing.Store
	key string
}

// Close releases this user's hold; the last one closes the store.
func (s *sharedStore) Close() error {
	_, err := storePool.Delete(s.key)
	return err
}

type storeHandle struct{ licensing.Store }

func (s storeHandle) Destruct() error { return s.Store.Close() }

func openShared(m LicenseStore) (licensing.Store, error) {
	v, _, err := storePool.LoadOrNew(m.StoreKey(), func() (caddy.Destructor, error) {
		st, err := m.OpenStore()
		if err != nil {
			return nil, err
		}
		return storeHandle{st}, nil
	})
	if err != nil {
		return nil, err
	}
	return &sharedStore{Store: v.(storeHandle).Store, key: m.StoreKey()}, nil
}

// cleanupLicenses releases this config's hold on its ledger.
func (l *licenses) cleanup() error {
	if l == nil {
		return nil
	}
	_, err := licensePool.Delete(l.poolKey)
	return err
}

// subject names whom a session's licenses belong to: its verified user,
// else its verified device.
func (h *Handler) subject(sess *protocol.ServerSession) (string, error) {
	if u := sess.Credential(protocol.CredentialUser); u != nil {
		return "user:" + h.credentials.userID(u), nil
	}
	if d := sess.Credential(protocol.CredentialDevice); d != nil {
		sum := sha256.Sum256(d.RawSubjectPublicKeyInfo)
		return "device:" + hex.EncodeToString(sum[:]), nil
	}
	return "", fmt.Errorf("%w: this site counts views per user", protocol.ErrCredentialsRequired)
}

// key names the license of subject for media id.
func (l *licenses) key(subject, id string) licensing.Key {
	return licensing.Key{Subject: subject, Media: l.realm + id}
}

// termsFor are the terms of a medium: the site's, or its catalog entry's.
func (l *licenses) termsFor(o *mediaLicense) licensing.Terms {
	t := l.terms
	if o != nil {
		t.Free = o.Free
		if o.Views > 0 {
			t.Views = o.Views
		}
	}
	return t
}

// charge accounts for one chunk of a play before it is read: when it
// returns nil the chunk may go out, and any view it started is committed.
func (h *Handler) charge(r *http.Request, sess *protocol.ServerSession, req protocol.ChunkRequest, item catalogItem, n int64) error {
	if req.Play.IsZero() {
		return fmt.Errorf("%w: a chunk request without a play id; this site counts views (protocol §21)", protocol.ErrMalformed)
	}
	subject, err := h.subject(sess)
	if err != nil {
		return err
	}
	key := h.licenses.key(subject, req.MediaID)
	c, err := h.licenses.ledger.Chunk(r.Context(), key, licensing.PlayID(req.Play), h.licenses.termsFor(item.license), item.Size, n)
	if err != nil {
		return h.licenseRefusal(key, req.MediaID, req.Play, err)
	}
	if c.Started {
		metricViews.WithLabelValues("charged").Inc()
		h.logger.Info("view charged", zap.String("subject", subject), zap.String("media", req.MediaID),
			zap.Stringer("play", req.Play), zap.Uint32("views_left", c.License.ViewsLeft), zap.Stringer("session", sess.ID()))
	}
	return nil
}

// licenseRefusal turns a ledger's refusal into the protocol's, logging
// what the client is not told.
func (h *Handler) licenseRefusal(key licensing.Key, id string, play protocol.PlayID, err error) error {
	var pr *licensing.PaymentRequired
	var tm *licensing.TooManyPlays
	switch {
	case errors.As(err, &pr):
		metricViews.WithLabelValues("payment_required").Inc()
		reason := fmt.Sprintf("no views left of %q", id)
		if errors.Is(err, licensing.ErrExpired) {
			reason = fmt.Sprintf("the license of %q expired at %s", id, pr.License.Expires.UTC().Format(time.RFC3339))
		}
		h.logger.Info("payment required", zap.String("subject", key.Subject), zap.String("media", key.Media),
			zap.Stringer("play", play), zap.String("reason", reason))
		return &paymentRequired{body: protocol.PaymentRequired{Media: id, ViewsLeft: pr.License.ViewsLeft,
			Expires: pr.License.Expires, Renewable: pr.Renewable, Reason: reason}}
	case errors.As(err, &tm):
		metricViews.WithLabelValues("too_many_plays").Inc()
		holders := make([]string, len(tm.Holders))
		for i, p := range tm.Holders {
			holders[i] = fmt.Sprintf("%s play %s last seen %s", p.Key.Media, p.Play, p.LastSeen.UTC().Format(time.RFC3339))
		}
		h.logger.Warn("too many plays", zap.String("subject", key.Subject), zap.String("media", key.Media),
			zap.Stringer("play", play), zap.Int("limit", tm.Limit), zap.Strings("held_by", holders))
		return fmt.Errorf("%w: %d plays are open, the limit is %d; one frees when it has been idle %v",
			protocol.ErrTooManyPlays, len(tm.Holders), tm.Limit, time.Duration(h.License.PlayTimeout))
	case errors.Is(err, licensing.ErrLedgerClosed):
		// A request still in flight on a config a reload replaced: the
		// client tries again, on the new one.
		return fmt.Errorf("%w: the server is reloading", protocol.ErrBusy)
	}
	return fmt.Errorf("drm: licenses: %w", err) // the store failed: the server's fault, and no chunk goes out
}

// paymentRequired is a 402 refusal and its body (protocol §4, §21).
type paymentRequired struct{ body protocol.PaymentRequired }

func (e *paymentRequired) Error() string {
	return protocol.ErrPaymentRequired.Error() + ": " + e.body.Reason
}
func (e *paymentRequired) Unwrap() error { return protocol.ErrPaymentRequired }

// writePaymentRequired answers 402 with the Drm-Error header and the
// PaymentRequired body. The refusal is logged where it was decided; the
// response is complete, so no error goes back to Caddy (which would write
// a second status).
func (h *Handler) writePaymentRequired(w http.ResponseWriter, pr *paymentRequired) error {
	_, code, reason := protocol.Refusal(pr)
	body, err := json.Marshal(pr.body)
	if err != nil {
		return h.fail(w, err)
	}
	w.Header().Set("Drm-Error", code+": "+reason)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusPaymentRequired)
	metricErrors.WithLabelValues(code).Inc()
	_, err = w.Write(body)
	return err
}

// serveRenew answers a renew request: the approver decides.
func (h *Handler) serveRenew(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, sess *protocol.ServerSession, req *protocol.Accepted) error {
	if h.licenses == nil {
		return h.fail(w, fmt.Errorf("%w: this site does not count views", protocol.ErrWrongMessage))
	}
	id := req.MediaID()
	item, err := h.catalog.lookup(r, next, id)
	if err != nil {
		return h.fail(w, err)
	}
	subject, err := h.subject(sess)
	if err != nil {
		return h.fail(w, err)
	}
	key := h.licenses.key(subject, id)
	lic, err := h.licenses.ledger.Renew(r.Context(), key, h.licenses.termsFor(item.license))
	var denied *licensing.RenewalDenied
	if errors.As(err, &denied) {
		metricViews.WithLabelValues("renewal_denied").Inc()
		h.logger.Info("renewal denied", zap.String("subject", subject), zap.String("media", id), zap.String("reason", denied.Reason),
			zap.String("detail", denied.Detail))
		return h.fail(w, fmt.Errorf("%w: %s", protocol.ErrRenewalDenied, denied.Reason))
	}
	if err != nil {
		return h.fail(w, fmt.Errorf("drm: licenses: %w", err))
	}
	metricViews.WithLabelValues("renewed").Inc()
	h.logger.Info("license renewed", zap.String("subject", subject), zap.String("media", id),
		zap.Uint32("views_left", lic.ViewsLeft), zap.Uint32("renewals", lic.Renewals))
	reply, err := sess.SealRenewal(req, protocol.Renewal{Media: id, ViewsLeft: lic.ViewsLeft, Expires: lic.Expires})
	if err != nil {
		return h.fail(w, err)
	}
	return h.writeBinary(w, reply)
}
