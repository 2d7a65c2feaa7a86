package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/licensing"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// licenseEnv is a handler that requires a device and a user and counts
// views in a bbolt file of its own.
type licenseEnv struct {
	*env
	pki   *credPKI
	other protocol.Credential // a second user
	store string              // the bbolt file
}

func newLicenseEnv(t *testing.T, files map[string][]byte, cfg LicenseConfig) *licenseEnv {
	t.Helper()
	pki := newCredPKI(t)
	other, err := keystore.IssueUser(pki.dir, keystore.UserID{SerialNumber: "BI87654321", Name: "João Sousa"}, keystore.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "licenses.db")
	if cfg.StoreRaw == nil {
		cfg.StoreRaw = caddyconfig.JSONModuleObject(BoltLicenseStore{Path: store}, "backend", "bbolt", nil)
	}
	e := newEnv(t, newOrigin(rangeMode, true, files), func(h *Handler) {
		pki.requireBoth(h)
		h.License = &cfg
	})
	return &licenseEnv{env: e, pki: pki, other: pki.credential(t, protocol.CredentialUser, other), store: store}
}

// as opens an authenticated session of the device and user.
func (e *licenseEnv) as(t *testing.T, user protocol.Credential) *protocol.ClientSession {
	t.Helper()
	resp, s := e.authenticate(t, e.pki.device, user)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client auth: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	return s
}

// chunk asks for chunk index of id in play and returns the response; a
// 200 must open.
func (e *licenseEnv) chunk(t *testing.T, s *protocol.ClientSession, play protocol.PlayID, id string, index uint64) *http.Response {
	t.Helper()
	req := s.NewChunkRequestFor(play, id, index)
	resp, body := e.post(t, "chunk", req.Envelope())
	if resp.StatusCode == http.StatusOK {
		if _, err := req.OpenChunk(body); err != nil {
			t.Fatal(err)
		}
	} else if resp.StatusCode == http.StatusPaymentRequired && protocol.ErrorCode(protocol.ErrorFromCode(resp.Header.Get("Drm-Error"))) == "payment-required" {
		var pr protocol.PaymentRequired
		if err := json.Unmarshal(body, &pr); err != nil || pr.Media != id {
			t.Fatalf("402 body %q: %v", body, err)
		}
		resp.Header.Set("X-Test-Body", string(body))
	}
	return resp
}

func (e *licenseEnv) renew(t *testing.T, s *protocol.ClientSession, id string) (protocol.Renewal, *http.Response) {
	t.Helper()
	req := s.NewRenewRequest(id)
	resp, body := e.post(t, "renew", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		return protocol.Renewal{}, resp
	}
	rn, err := req.OpenRenewal(body)
	if err != nil {
		t.Fatal(err)
	}
	return rn, resp
}

// licenseOf reads a license from the handler's ledger's store.
func (e *licenseEnv) licenseOf(t *testing.T, subject, media string) licensing.License {
	t.Helper()
	v, ok := licensePool.References(e.h.licenses.poolKey)
	if !ok || v == 0 {
		t.Fatal("no ledger in the pool")
	}
	lv, _ := licensePool.LoadOrStore(e.h.licenses.poolKey, nil)
	defer licensePool.Delete(e.h.licenses.poolKey)
	lic, found, err := lv.(*ledgerHandle).store.License(context.Background(), e.h.licenses.key(subject, media))
	if err != nil || !found {
		t.Fatalf("license of %s for %s: found %v, %v", subject, media, found, err)
	}
	return lic
}

const maria, joao = "user:BI12345678", "user:BI87654321"

// TestLicensesThroughTheHandler: one play is one view, whatever session
// carries it; a new play id is a new view; the 402 says what is left; the
// catalog's free and one-view media; other users are untouched.
func TestLicensesThroughTheHandler(t *testing.T) {
	catalogJSON := `[{"id":"a.flac"},{"id":"free.flac","license":{"free":true}},{"id":"preview.flac","license":{"views":1}}]`
	e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(3*testChunkSize, 1), "free.flac": mediaBytes(100, 2),
		"preview.flac": mediaBytes(100, 3), "catalog.json": []byte(catalogJSON)}, LicenseConfig{Views: 2})
	logs := observeLogs(t, e.h)
	s := e.as(t, e.pki.user)

	p1 := protocol.NewPlayID()
	for _, i := range []uint64{0, 2, 1, 0} { // seeks
		if resp := e.chunk(t, s, p1, "a.flac", i); resp.StatusCode != http.StatusOK {
			t.Fatalf("play 1 chunk %d: %s %q", i, resp.Status, resp.Header.Get("Drm-Error"))
		}
	}
	s2 := e.as(t, e.pki.user) // a new session: the same play goes on, free
	if resp := e.chunk(t, s2, p1, "a.flac", 2); resp.StatusCode != http.StatusOK {
		t.Fatalf("play 1 in a new session: %s", resp.Status)
	}
	if lic := e.licenseOf(t, maria, "a.flac"); lic.ViewsLeft != 1 || lic.ViewsUsed != 1 {
		t.Fatalf("after one play: %+v", lic)
	}
	if resp := e.chunk(t, s2, protocol.NewPlayID(), "a.flac", 0); resp.StatusCode != http.StatusOK {
		t.Fatalf("play 2: %s", resp.Status)
	}
	resp := e.chunk(t, s2, protocol.NewPlayID(), "a.flac", 0)
	wantRefusal(t, "play 3 of 2", resp, http.StatusPaymentRequired, "payment-required")
	var pr protocol.PaymentRequired
	json.Unmarshal([]byte(resp.Header.Get("X-Test-Body")), &pr)
	if pr != (protocol.PaymentRequired{Media: "a.flac", Reason: `no views left of "a.flac"`}) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("402 body %+v (%s)", pr, resp.Header.Get("Content-Type"))
	}
	if resp := e.chunk(t, s2, p1, "a.flac", 1); resp.StatusCode != http.StatusOK {
		t.Fatalf("the open play 1 after the license ran out: %s", resp.Status)
	}
	resp = e.chunk(t, s2, protocol.PlayID{}, "a.flac", 0)
	wantRefusal(t, "no play id", resp, http.StatusBadRequest, "malformed")

	for range 3 {
		if resp := e.chunk(t, s2, protocol.NewPlayID(), "free.flac", 0); resp.StatusCode != http.StatusOK {
			t.Fatalf("a free medium: %s", resp.Status)
		}
	}
	if resp := e.chunk(t, s2, protocol.NewPlayID(), "preview.flac", 0); resp.StatusCode != http.StatusOK {
		t.Fatalf("the one view of the preview: %s", resp.Status)
	}
	wantRefusal(t, "a second view of the preview", e.chunk(t, s2, protocol.NewPlayID(), "preview.flac", 0), http.StatusPaymentRequired, "payment-required")

	other := e.as(t, e.other)
	if resp := e.chunk(t, other, protocol.NewPlayID(), "a.flac", 0); resp.StatusCode != http.StatusOK {
		t.Fatalf("another user: %s", resp.Status)
	}
	if lic := e.licenseOf(t, joao, "a.flac"); lic.ViewsLeft != 1 {
		t.Fatalf("the other user's license: %+v", lic)
	}
	if lic := e.licenseOf(t, maria, "a.flac"); lic.ViewsLeft != 0 || lic.ViewsUsed != 2 {
		t.Fatalf("the first user's license: %+v", lic)
	}
	if n := len(logs.FilterMessage("view charged").All()); n != 4 {
		t.Errorf("%d views logged, want 4", n)
	}
	if l := logs.FilterMessage("payment required").All(); len(l) != 2 || l[0].ContextMap()["subject"] != maria {
		t.Errorf("payment required logs: %v", l)
	}

	_, resp = e.renew(t, s2, "a.flac")
	wantRefusal(t, "renew on a site that denies", resp, http.StatusPaymentRequired, "renewal-denied")
	if de := resp.Header.Get("Drm-Error"); !strings.Contains(de, "renewal is disabled") {
		t.Errorf("Drm-Error %q does not say why", de)
	}
}

// TestRenewalThroughTheHandler: renew auto refills; the 402 offers it.
func TestRenewalThroughTheHandler(t *testing.T) {
	e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1)}, LicenseConfig{Views: 1, Renew: "auto", RenewViews: 2})
	s := e.as(t, e.pki.user)
	if resp := e.chunk(t, s, protocol.NewPlayID(), "a.flac", 0); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	resp := e.chunk(t, s, protocol.NewPlayID(), "a.flac", 0)
	wantRefusal(t, "second play", resp, http.StatusPaymentRequired, "payment-required")
	if !strings.Contains(resp.Header.Get("X-Test-Body"), `"renewable":true`) {
		t.Fatalf("the 402 offers no renewal: %s", resp.Header.Get("X-Test-Body"))
	}
	rn, resp := e.renew(t, s, "a.flac")
	if resp.StatusCode != http.StatusOK || rn != (protocol.Renewal{Media: "a.flac", ViewsLeft: 2}) {
		t.Fatalf("renewal: %s %+v", resp.Status, rn)
	}
	for range 2 {
		if resp := e.chunk(t, s, protocol.NewPlayID(), "a.flac", 0); resp.StatusCode != http.StatusOK {
			t.Fatalf("after the renewal: %s", resp.Status)
		}
	}
	if lic := e.licenseOf(t, maria, "a.flac"); lic.Renewals != 1 || lic.ViewsLeft != 0 || lic.ViewsUsed != 3 {
		t.Fatalf("license %+v", lic)
	}
	_, resp = e.renew(t, s, "nope.flac")
	wantRefusal(t, "renewing a medium not in the catalog", resp, http.StatusNotFound, "not-found")
}

// TestConcurrentPlaysThroughTheHandler: with concurrent 2 the third play
// of a user is refused with its own code, and the log names the holders;
// another user plays.
func TestConcurrentPlaysThroughTheHandler(t *testing.T) {
	e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1), "b.flac": mediaBytes(100, 2)}, LicenseConfig{Views: 9, Concurrent: 2})
	logs := observeLogs(t, e.h)
	s := e.as(t, e.pki.user)
	e.chunk(t, s, protocol.NewPlayID(), "a.flac", 0)
	e.chunk(t, s, protocol.NewPlayID(), "b.flac", 0)
	resp := e.chunk(t, e.as(t, e.pki.user), protocol.NewPlayID(), "a.flac", 0)
	wantRefusal(t, "a third play", resp, http.StatusConflict, "too-many-plays")
	if l := logs.FilterMessage("too many plays").All(); len(l) != 1 || len(l[0].ContextMap()["held_by"].([]any)) != 2 {
		t.Errorf("the log does not name the two holders: %v", l)
	}
	if resp := e.chunk(t, e.as(t, e.other), protocol.NewPlayID(), "a.flac", 0); resp.StatusCode != http.StatusOK {
		t.Fatalf("another user's play: %s", resp.Status)
	}
}

// TestConcurrentStartsThroughTheHandler: 100 plays started at once
// against 5 views: exactly 5 play.
func TestConcurrentStartsThroughTheHandler(t *testing.T) {
	e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1)}, LicenseConfig{Views: 5})
	s := e.as(t, e.pki.user)
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			req := s.NewChunkRequestFor(protocol.NewPlayID(), "a.flac", 0)
			resp, _ := e.post(t, "chunk", req.Envelope())
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[200] != 5 || statuses[402] != 95 {
		t.Fatalf("statuses %v, want 5×200 and 95×402", statuses)
	}
	if lic := e.licenseOf(t, maria, "a.flac"); lic.ViewsLeft != 0 || lic.ViewsUsed != 5 {
		t.Fatalf("license %+v", lic)
	}
}

// heldStore is a store whose Charge waits for release, and says when it
// was entered: no chunk may leave before the view it starts is committed.
type heldStore struct {
	licensing.Store
	entered, release chan struct{}
	fail             error
}

func (s *heldStore) Charge(ctx context.Context, key licensing.Key, play licensing.PlayID, terms licensing.Terms, again bool, now time.Time, retain time.Duration) (licensing.License, licensing.PlayRecord, bool, error) {
	s.entered <- struct{}{}
	<-s.release
	if s.fail != nil {
		return licensing.License{}, licensing.PlayRecord{}, false, s.fail
	}
	return s.Store.Charge(ctx, key, play, terms, again, now, retain)
}

var heldStores sync.Map // name → *heldStore

// heldStoreModule is a test license store module.
type heldStoreModule struct {
	Name string `json:"name"`
}

func (heldStoreModule) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "drm.license_stores.test_held", New: func() caddy.Module { return new(heldStoreModule) }}
}
func (m *heldStoreModule) StoreKey() string { return "test_held:" + m.Name }
func (m *heldStoreModule) OpenStore() (licensing.Store, error) {
	s, _ := heldStores.Load(m.Name)
	return s.(*heldStore), nil
}

func init() { caddy.RegisterModule(heldStoreModule{}) }

// TestViewCommittedBeforeTheChunk: while the store has not committed the
// view, the origin is not even read; a store that fails refuses the chunk.
func TestViewCommittedBeforeTheChunk(t *testing.T) {
	for _, fail := range []error{nil, errors.New("disk full")} {
		name := t.Name() + "/" + map[bool]string{true: "fails", false: "commits"}[fail != nil]
		t.Run(name, func(t *testing.T) {
			held := &heldStore{Store: licensing.NewMemoryStore(), entered: make(chan struct{}), release: make(chan struct{}), fail: fail}
			heldStores.Store(name, held)
			e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1)},
				LicenseConfig{StoreRaw: caddyconfig.JSONModuleObject(heldStoreModule{Name: name}, "backend", "test_held", nil)})
			s := e.as(t, e.pki.user)
			origin := e.next.next.(*origin)
			readMedium := func() bool { return slices.Contains(origin.paths(), "/a.flac") }
			var once sync.Once
			release := func() { once.Do(func() { close(held.release) }) }
			defer release() // a failed check must not leave the request hanging
			done := make(chan *http.Response)
			go func() {
				req := s.NewChunkRequestFor(protocol.NewPlayID(), "a.flac", 0)
				resp, _ := e.post(t, "chunk", req.Envelope())
				done <- resp
			}()
			<-held.entered
			if readMedium() {
				t.Fatalf("the origin was read before the view was committed: %q", origin.paths())
			}
			select {
			case resp := <-done:
				t.Fatalf("answered %s before the store committed", resp.Status)
			default:
			}
			release()
			resp := <-done
			if fail == nil && (resp.StatusCode != http.StatusOK || !readMedium()) {
				t.Fatalf("after the commit: %s, origin read %q", resp.Status, origin.paths())
			}
			if fail != nil {
				wantRefusal(t, "a failing store", resp, http.StatusInternalServerError, "internal")
				if readMedium() {
					t.Fatalf("the origin was read for a view the store did not commit: %q", origin.paths())
				}
			}
		})
	}
}

// TestWebhookFailuresDeny: a webhook that answers 500, garbage or nothing
// in time denies the renewal (402 renewal-denied, logged), never a 500.
func TestWebhookFailuresDeny(t *testing.T) {
	var stop chan struct{}
	for _, c := range []struct {
		name, reason string
		handler      http.HandlerFunc
	}{
		{"500", "500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }},
		{"garbage", "malformed", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>yes</html>")) }},
		{"timeout", "timed out", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		}},
		{"grant", "", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"grant": 3}`)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			stop = make(chan struct{})
			hook := httptest.NewServer(c.handler)
			defer hook.Close()
			defer close(stop) // first: the held handler returns, then Close

			e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1)},
				LicenseConfig{Views: 1, Renew: "webhook", Webhook: hook.URL, WebhookTimeout: caddy.Duration(200 * time.Millisecond)})
			logs := observeLogs(t, e.h)
			rn, resp := e.renew(t, e.as(t, e.pki.user), "a.flac")
			if c.reason == "" {
				if resp.StatusCode != http.StatusOK || rn.ViewsLeft != 4 {
					t.Fatalf("grant: %s %+v", resp.Status, rn)
				}
				return
			}
			wantRefusal(t, c.name, resp, http.StatusPaymentRequired, "renewal-denied")
			if de := resp.Header.Get("Drm-Error"); !strings.Contains(de, c.reason) {
				t.Errorf("Drm-Error %q does not say %q", de, c.reason)
			}
			if l := logs.FilterMessage("renewal denied").All(); len(l) != 1 || !strings.Contains(l[0].ContextMap()["reason"].(string), c.reason) {
				t.Errorf("not logged: %v", l)
			}
		})
	}
}

// TestLicenseOptionsRefused: a license without credentials, or with a bad
// policy, does not start.
func TestLicenseOptionsRefused(t *testing.T) {
	pki := newCredPKI(t)
	for _, c := range []struct {
		name  string
		creds bool
		cfg   LicenseConfig
		want  string
	}{
		{"no credentials", false, LicenseConfig{}, "license needs require"},
		{"unknown approver", true, LicenseConfig{Renew: "ask"}, `renew "ask"`},
		{"webhook without URL", true, LicenseConfig{Renew: "webhook"}, "needs a URL"},
		{"bound under 1", true, LicenseConfig{PlayBound: 0.5}, "play_bound"},
		{"play timeout under a second", true, LicenseConfig{PlayTimeout: caddy.Duration(time.Millisecond)}, "play_timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.StoreRaw = caddyconfig.JSONModuleObject(BoltLicenseStore{Path: filepath.Join(t.TempDir(), "l.db")}, "backend", "bbolt", nil)
			h := &Handler{Prefix: uniquePrefix(), Certificate: pki.files.ServerCert, Key: pki.files.ServerKey, License: &cfg}
			if c.creds {
				pki.requireBoth(h)
			}
			if err := provision(t, h); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("provision: %v, want %q", err, c.want)
			}
		})
	}
}

// TestLicenseStoreSurvivesReload: a second config of the same store (a
// reload) provisions at once — bbolt's lock would block a second handle —
// and keeps counting after the first is cleaned up.
func TestLicenseStoreSurvivesReload(t *testing.T) {
	e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1)}, LicenseConfig{Views: 3})
	s := e.as(t, e.pki.user)
	e.chunk(t, s, protocol.NewPlayID(), "a.flac", 0)

	cfg := *e.h.License
	cfg.StoreRaw = caddyconfig.JSONModuleObject(BoltLicenseStore{Path: e.store}, "backend", "bbolt", nil) // LoadModule used it up
	h2 := &Handler{Prefix: e.h.Prefix, Certificate: e.h.Certificate, Key: e.h.Key, ChunkSize: e.h.ChunkSize, License: &cfg}
	e.pki.requireBoth(h2)
	if err := provision(t, h2); err != nil {
		t.Fatal(err)
	}
	if h2.licenses.ledger != e.h.licenses.ledger {
		t.Fatal("the reloaded config has a ledger of its own: open plays would be forgotten")
	}
	if err := e.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	e.h.poolKey = "" // cleaned up already
	e.h.licenses = h2.licenses
	if lic := e.licenseOf(t, maria, "a.flac"); lic.ViewsLeft != 2 {
		t.Fatalf("after the reload: %+v", lic)
	}
}

// TestSitesShareAStoreNotLicenses: two sites on one Caddy, with the
// default (shared) store and media of the same name, count apart.
func TestSitesShareAStoreNotLicenses(t *testing.T) {
	files := map[string][]byte{"a.flac": mediaBytes(100, 1)}
	a := newLicenseEnv(t, files, LicenseConfig{Views: 1})
	b := newLicenseEnv(t, files, LicenseConfig{Views: 1, StoreRaw: caddyconfig.JSONModuleObject(BoltLicenseStore{Path: a.store}, "backend", "bbolt", nil)})
	// Both PKIs name their user BI12345678: one subject on both sites.
	if a.h.Endpoint == b.h.Endpoint {
		t.Fatal("the two sites have one endpoint name")
	}
	for _, e := range []*licenseEnv{a, b} {
		if resp := e.chunk(t, e.as(t, e.pki.user), protocol.NewPlayID(), "a.flac", 0); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %q", e.h.Endpoint, resp.Status, resp.Header.Get("Drm-Error"))
		}
	}
}

// TestRenewalDeniedKeepsTheWebhookURL: an unreachable webhook's URL (a
// token in it, say) is logged, never sent to the listener.
func TestRenewalDeniedKeepsTheWebhookURL(t *testing.T) {
	e := newLicenseEnv(t, map[string][]byte{"a.flac": mediaBytes(100, 1)},
		LicenseConfig{Views: 1, Renew: "webhook", Webhook: "http://127.0.0.1:1/renew?token=s3cret"})
	logs := observeLogs(t, e.h)
	_, resp := e.renew(t, e.as(t, e.pki.user), "a.flac")
	wantRefusal(t, "unreachable webhook", resp, http.StatusPaymentRequired, "renewal-denied")
	if de := resp.Header.Get("Drm-Error"); strings.Contains(de, "s3cret") || !strings.Contains(de, "unreachable") {
		t.Errorf("Drm-Error %q", de)
	}
	if l := logs.FilterMessage("renewal denied").All(); len(l) != 1 || !strings.Contains(l[0].ContextMap()["detail"].(string), "s3cret") {
		t.Errorf("the log lacks the detail: %v", l)
	}
}
