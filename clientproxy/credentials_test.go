package clientproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// clientCA issues device and user credentials and verifies them, as the
// server's policy does; it can refuse a certificate as a CRL would.
type clientCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	mu      sync.Mutex
	serial  int64
	revoked map[string]bool
}

func newClientCA(t *testing.T, name string) *clientCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &clientCA{cert: cert, key: key, serial: 1, revoked: map[string]bool{}}
}

func (ca *clientCA) issue(t *testing.T, kind string) protocol.Credential {
	t.Helper()
	ca.mu.Lock()
	ca.serial++
	serial := big.NewInt(ca.serial)
	ca.mu.Unlock()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: kind}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return protocol.Credential{Kind: kind, Chain: [][]byte{der}, Signer: key}
}

func (ca *clientCA) revoke(c protocol.Credential) {
	leaf, _ := x509.ParseCertificate(c.Chain[0])
	ca.mu.Lock()
	ca.revoked[leaf.SerialNumber.String()] = true
	ca.mu.Unlock()
}

type revokedError struct{}

func (revokedError) Error() string        { return "revoked (serial …)" }
func (revokedError) PublicReason() string { return "revoked" }

// policy requires a device from devices and a user from users.
func credentialPolicy(devices, users *clientCA) *protocol.ClientAuthPolicy {
	cas := map[string]*clientCA{protocol.CredentialDevice: devices, protocol.CredentialUser: users}
	return &protocol.ClientAuthPolicy{
		Require:     []string{protocol.CredentialDevice, protocol.CredentialUser},
		Authorities: map[string][][]byte{protocol.CredentialDevice: {devices.cert.RawSubject}, protocol.CredentialUser: {users.cert.RawSubject}},
		Verify: func(kind string, chain [][]byte) (*x509.Certificate, error) {
			ca := cas[kind]
			leaf, err := x509.ParseCertificate(chain[0])
			if err != nil {
				return nil, err
			}
			if err := leaf.CheckSignatureFrom(ca.cert); err != nil {
				return nil, err
			}
			ca.mu.Lock()
			defer ca.mu.Unlock()
			if ca.revoked[leaf.SerialNumber.String()] {
				return nil, revokedError{}
			}
			return leaf, nil
		},
	}
}

// TestClientPresentsCredentials: with a server that requires a device and
// a user, the client presents both as the session's first request and
// plays; a rekey on the way is signed by its device.
func TestClientPresentsCredentials(t *testing.T) {
	devices, users := newClientCA(t, "devices"), newClientCA(t, "users")
	srv := newDRMServer(t, drmOptions{ClientAuth: credentialPolicy(devices, users), Limits: protocol.EpochLimits{Chunks: 3}})
	data := srv.add("m", 5*drmChunkSize)
	c := newDRMClient(t, srv, func(o *ClientOptions) {
		o.Credentials = []protocol.Credential{users.issue(t, protocol.CredentialUser), devices.issue(t, protocol.CredentialDevice)}
	})
	if got := readMedium(t, c, "m", len(data)); string(got) != string(data) {
		t.Fatal("the medium differs")
	}
	st := srv.snapshot()
	if st.requests["client-auth"] != 1 || st.refusals["credentials-required"] != 0 || st.rekeys == 0 {
		t.Fatalf("server saw %v requests, %v refusals, %d rekeys; want one client-auth, no refusal, rekeys", st.requests, st.refusals, st.rekeys)
	}
}

// TestClientWithoutCredentials: a client lacking what the server requires
// fails closed, before sending anything past the handshake, and says
// which credential and which flags.
func TestClientWithoutCredentials(t *testing.T) {
	devices, users := newClientCA(t, "devices"), newClientCA(t, "users")
	srv := newDRMServer(t, drmOptions{ClientAuth: credentialPolicy(devices, users)})
	srv.add("m", 10)
	c := newDRMClient(t, srv, func(o *ClientOptions) {
		o.Credentials = []protocol.Credential{devices.issue(t, protocol.CredentialDevice)}
	})
	_, err := c.ReadChunk(testCtx(t), "m", 0)
	if !errors.Is(err, protocol.ErrCredentialsRequired) || !strings.Contains(err.Error(), "user") || !strings.Contains(err.Error(), "--user-cert") {
		t.Fatalf("got %v", err)
	}
	if st := srv.snapshot(); st.requests["client-auth"] != 0 || st.requests["chunk"] != 0 || st.handshakes != 1 {
		t.Fatalf("server saw %v after one handshake; want nothing more", st.requests)
	}
}

// TestClientCredentialRefused: a refused credential is final — no retry
// loop — and the client is told the reason.
func TestClientCredentialRefused(t *testing.T) {
	devices, users := newClientCA(t, "devices"), newClientCA(t, "users")
	srv := newDRMServer(t, drmOptions{ClientAuth: credentialPolicy(devices, users)})
	srv.add("m", 10)
	user := users.issue(t, protocol.CredentialUser)
	users.revoke(user)
	c := newDRMClient(t, srv, func(o *ClientOptions) {
		o.Credentials = []protocol.Credential{devices.issue(t, protocol.CredentialDevice), user}
	})
	_, err := c.ReadChunk(testCtx(t), "m", 0)
	if !errors.Is(err, protocol.ErrCredentialRefused) || !strings.Contains(err.Error(), "user credential: revoked") {
		t.Fatalf("got %v", err)
	}
	if st := srv.snapshot(); st.requests["client-auth"] != 1 || st.handshakes != 1 {
		t.Fatalf("a refused credential was retried: %v, %d handshakes", st.requests, st.handshakes)
	}
}

// TestPlayerToldWhyRefused: a player asking for media a refused listener
// may not play gets 403 and the reason, not a 502.
func TestPlayerToldWhyRefused(t *testing.T) {
	devices, users := newClientCA(t, "devices"), newClientCA(t, "users")
	srv := newDRMServer(t, drmOptions{ClientAuth: credentialPolicy(devices, users)})
	srv.add("m", 10)
	user := users.issue(t, protocol.CredentialUser)
	users.revoke(user)
	c := newDRMClient(t, srv, func(o *ClientOptions) {
		o.Credentials = []protocol.Credential{devices.issue(t, protocol.CredentialDevice), user}
	})
	_, ts, _ := startServer(t, c, ServerOptions{})
	resp, body, err := fetch(t, ts, "GET", "/media/m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "user credential: revoked") {
		t.Fatalf("%s: %q", resp.Status, body)
	}
}
