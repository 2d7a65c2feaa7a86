package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// credPKI is a development PKI with a device and a user issued, as
// `caddy drm pki init/issue` makes them.
type credPKI struct {
	dir          string
	files        keystore.Files
	device, user protocol.Credential
}

func newCredPKI(t *testing.T) *credPKI {
	t.Helper()
	dir := t.TempDir()
	files, err := keystore.InitPKI(dir, keystore.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &credPKI{dir: dir, files: files}
	dev, err := keystore.IssueDevice(dir, "laptop", keystore.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	user, err := keystore.IssueUser(dir, keystore.UserID{SerialNumber: "BI12345678", Name: "Maria Silva"}, keystore.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.device, p.user = p.credential(t, protocol.CredentialDevice, dev), p.credential(t, protocol.CredentialUser, user)
	return p
}

func (p *credPKI) credential(t *testing.T, kind string, f keystore.LeafFiles) protocol.Credential {
	t.Helper()
	id, err := keystore.LoadIdentity(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return protocol.Credential{Kind: kind, Chain: id.Chain, Signer: id.Signer}
}

// requireBoth configures h to require a device and a user of p, with
// p's CRLs.
func (p *credPKI) requireBoth(h *Handler) {
	d, u := p.files.CA(keystore.DeviceCA), p.files.CA(keystore.UserCA)
	h.Require = []string{protocol.CredentialDevice, protocol.CredentialUser}
	h.DeviceCA, h.UserCA = []string{d.Cert}, []string{u.Cert}
	h.CRL = []string{d.CRL, d.DeltaCRL, u.CRL, u.DeltaCRL}
}

// authenticate presents creds on a fresh session of e and returns the
// response and the session.
func (e *env) authenticate(t *testing.T, creds ...protocol.Credential) (*http.Response, *protocol.ClientSession) {
	t.Helper()
	s := e.handshake(t)
	req, err := s.NewClientAuthRequest(creds)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.post(t, "client-auth", req.Envelope())
	if resp.StatusCode == http.StatusOK {
		if _, err := req.OpenReply(body); err != nil {
			t.Fatal(err)
		}
	}
	return resp, s
}

// TestCredentialsThroughTheHandler: a session presents a device and a
// user made by the PKI tooling and is served; before that it gets its
// catalog only; the log names who listens.
func TestCredentialsThroughTheHandler(t *testing.T) {
	pki := newCredPKI(t)
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(3000, 1)}), pki.requireBoth)
	logs := observeLogs(t, e.h)

	s := e.handshake(t)
	resp, _ := e.post(t, "chunk", s.NewChunkRequest("a.flac", 0).Envelope())
	wantRefusal(t, "a chunk before the credentials", resp, http.StatusForbidden, "credentials-required")
	if de := resp.Header.Get("Drm-Error"); !strings.Contains(de, "device and user") {
		t.Errorf("the refusal does not name what is missing: %q", de)
	}
	resp, _ = e.post(t, "catalog", s.NewCatalogRequest().Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the catalog before the credentials (before_credentials catalog): %s", resp.Status)
	}

	before := testutil.ToFloat64(metricClientAuth.WithLabelValues("verified"))
	resp, s = e.authenticate(t, pki.device, pki.user)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client auth: %s, Drm-Error %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	chunk := s.NewChunkRequest("a.flac", 0)
	resp, body := e.post(t, "chunk", chunk.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a chunk after the credentials: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	if _, err := chunk.OpenChunk(body); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(metricClientAuth.WithLabelValues("verified")) - before; n != 1 {
		t.Errorf("client_auth_total{verified} grew by %v, want 1", n)
	}
	if l := logs.FilterMessage("client authenticated").All(); len(l) != 1 || l[0].ContextMap()["user"] != "BI12345678" ||
		!strings.Contains(l[0].ContextMap()["device"].(string), "laptop") {
		t.Errorf("the log does not name the user and device: %v", l)
	}
}

// TestCredentialRefusalsThroughTheHandler: refused credentials are 403
// credential-refused with the reason only; the server's log names the
// certificate; none is a 500.
func TestCredentialRefusalsThroughTheHandler(t *testing.T) {
	pki := newCredPKI(t)
	other := newCredPKI(t)
	revoked, err := keystore.IssueUser(pki.dir, keystore.UserID{SerialNumber: "BI00000001", Name: "Revoked"}, keystore.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Revoke(pki.dir, revoked.Cert, "keyCompromise", keystore.CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(10, 1)}), pki.requireBoth)
	logs := observeLogs(t, e.h)
	// A client's own check of the issuer passes when the chain carries the
	// user CA's certificate: the server must refuse on its own.
	userCA, err := keystore.LoadCertificates(pki.files.CA(keystore.UserCA).Cert)
	if err != nil {
		t.Fatal(err)
	}
	disguised := func(c protocol.Credential) protocol.Credential {
		c.Kind, c.Chain = protocol.CredentialUser, append(append([][]byte{}, c.Chain...), userCA...)
		return c
	}
	for _, c := range []struct {
		name   string
		user   protocol.Credential
		reason string
	}{
		{"revoked by the delta CRL", pki.credential(t, protocol.CredentialUser, revoked), "user credential: revoked"},
		{"another PKI's user", disguised(other.user), "user credential: unknown CA"},
		{"a device offered as the user", disguised(pki.device), "user credential: unknown CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, s := e.authenticate(t, pki.device, c.user)
			wantRefusal(t, c.name, resp, http.StatusForbidden, "credential-refused")
			if de := resp.Header.Get("Drm-Error"); de != "credential-refused: "+c.reason {
				t.Errorf("Drm-Error %q, want the reason %q only", de, c.reason)
			}
			// One try per session: the refused session is gone.
			req, err := s.NewClientAuthRequest([]protocol.Credential{pki.device, pki.user})
			if err != nil {
				t.Fatal(err)
			}
			resp, _ = e.post(t, "client-auth", req.Envelope())
			wantRefusal(t, "credentials again on the refused session", resp, http.StatusForbidden, "unknown-session")
		})
	}
	if l := logs.FilterMessage("credential refused").All(); len(l) < 3 || !strings.Contains(l[0].ContextMap()["error"].(string), "serial") {
		t.Errorf("the log does not name the refused certificates: %v", l)
	}
}

// TestCredentialOptionsRefused: the configurations that would let the
// wrong certificate in do not start.
func TestCredentialOptionsRefused(t *testing.T) {
	pki := newCredPKI(t)
	d, u := pki.files.CA(keystore.DeviceCA), pki.files.CA(keystore.UserCA)
	for _, c := range []struct {
		name   string
		mutate func(*Handler)
		want   string
	}{
		{"one CA for devices and users", func(h *Handler) {
			h.Require, h.DeviceCA, h.UserCA = []string{"device", "user"}, []string{d.Cert}, []string{d.Cert}
		}, "both a device and a user CA"},
		{"require without its CA", func(h *Handler) { h.Require, h.UserCA = []string{"device", "user"}, []string{u.Cert} }, "require device needs device_ca"},
		{"a CA without require", func(h *Handler) { h.DeviceCA = []string{d.Cert} }, "need require"},
		{"a CA file that is a leaf", func(h *Handler) {
			h.Require, h.UserCA = []string{"user"}, []string{pki.files.User("BI12345678").Cert}
		}, "user_ca"},
		{"a CRL signed by nobody configured", func(h *Handler) {
			h.Require, h.UserCA, h.CRL = []string{"user"}, []string{u.Cert}, []string{d.CRL}
		}, "crl"},
		{"an unknown user_id", func(h *Handler) { h.Require, h.UserCA, h.UserID = []string{"user"}, []string{u.Cert}, "name" }, "user_id"},
		{"require without any CRL", func(h *Handler) { h.Require, h.UserCA, h.CRL = []string{"user"}, []string{u.Cert}, nil }, "require needs crl"},
		{"before_credentials misspelt in JSON", func(h *Handler) {
			h.Require, h.UserCA, h.BeforeCredentials = []string{"user"}, []string{u.Cert}, "none"
		}, "before_credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := &Handler{Prefix: uniquePrefix(), Certificate: pki.files.ServerCert, Key: pki.files.ServerKey,
				CRL: []string{d.CRL, d.DeltaCRL, u.CRL, u.DeltaCRL}}
			c.mutate(h)
			err := provision(t, h)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("provision: %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// observeLogs sends h's log to an observer the test reads.
func observeLogs(t *testing.T, h *Handler) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	h.logger = zap.New(core)
	return logs
}

// TestUnnamedUserRefused: a user certificate without what user_id names
// (here an email SAN) cannot be named in licenses, and is refused.
func TestUnnamedUserRefused(t *testing.T) {
	pki := newCredPKI(t)
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": mediaBytes(10, 1)}), func(h *Handler) {
		pki.requireBoth(h)
		h.UserID = "email"
	})
	resp, _ := e.authenticate(t, pki.device, pki.user)
	wantRefusal(t, "a user without an email", resp, http.StatusForbidden, "credential-refused")
	if de := resp.Header.Get("Drm-Error"); de != "credential-refused: user credential: no email in the certificate" {
		t.Errorf("Drm-Error %q", de)
	}
}
