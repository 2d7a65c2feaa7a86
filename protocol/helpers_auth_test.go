package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"
)

// testCA is a client CA for the client-auth tests: it issues credentials
// and verifies chains as a server's policy would (path, clientAuth EKU),
// and can be told to refuse a certificate, as a CRL would.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer

	mu      sync.Mutex
	revoked map[string]bool // serial → refused
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := testKey(t, "p256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, revoked: map[string]bool{}}
}

func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serials struct {
	sync.Mutex
	n int64
}

// issue makes a credential of kind with a key of keyKind.
func (ca *testCA) issue(t testing.TB, kind, keyKind string) Credential {
	t.Helper()
	serials.Lock()
	serials.n++
	serial := big.NewInt(1000 + serials.n)
	serials.Unlock()
	key := testKey(t, keyKind)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: kind + " " + serial.String(), SerialNumber: "BI" + serial.String()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return Credential{Kind: kind, Chain: [][]byte{der}, Signer: key}
}

// publicError is a verifier's refusal with a reason for the client.
type publicError struct{ public, detail string }

func (e *publicError) Error() string        { return e.public + ": " + e.detail }
func (e *publicError) PublicReason() string { return e.public }

func (ca *testCA) verify(chain [][]byte) (*x509.Certificate, error) {
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, &publicError{"unknown CA", err.Error()}
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.revoked[leaf.SerialNumber.String()] {
		return nil, &publicError{"revoked", "serial " + leaf.SerialNumber.String() + " of " + leaf.Subject.String()}
	}
	return leaf, nil
}

func (ca *testCA) revoke(c Credential) {
	leaf, _ := x509.ParseCertificate(c.Chain[0])
	ca.mu.Lock()
	ca.revoked[leaf.SerialNumber.String()] = true
	ca.mu.Unlock()
}

// authPolicy requires kinds, devices from devices and users from users.
func authPolicy(devices, users *testCA, catalogFirst bool, require ...string) *ClientAuthPolicy {
	cas := map[string]*testCA{CredentialDevice: devices, CredentialUser: users}
	p := &ClientAuthPolicy{Require: require, Authorities: map[string][][]byte{}, CatalogFirst: catalogFirst,
		Verify: func(kind string, chain [][]byte) (*x509.Certificate, error) {
			ca := cas[kind]
			if ca == nil {
				return nil, errors.New("no CA for " + kind)
			}
			return ca.verify(chain)
		}}
	for _, k := range require {
		p.Authorities[k] = [][]byte{cas[k].cert.RawSubject}
	}
	return p
}

// newAuthPair is newPair with a client-auth policy.
func newAuthPair(t testing.TB, suite Suite, policy *ClientAuthPolicy) pair {
	t.Helper()
	id := testIdentity(t, "ed25519")
	srv := testServer(t, ServerConfig{Suites: []Suite{suite}, Identity: id, ClientAuth: policy})
	hs, hello, err := (&ClientConfig{Suites: []Suite{suite}, VerifyCertificate: pinned(id), Credentials: policy.Require}).Start()
	if err != nil {
		t.Fatal(err)
	}
	ss, reply, err := accept(t, srv, hello)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	return pair{ss, cs, srv}
}

// authenticate sends creds and returns the server's verdict.
func (p pair) authenticate(t testing.TB, creds ...Credential) error {
	t.Helper()
	req, err := p.client.NewClientAuthRequest(creds)
	if err != nil {
		return err
	}
	a, err := p.server.OpenRequest(req.Envelope())
	if err != nil {
		return err
	}
	reply, err := p.server.Authenticate(a)
	if err != nil {
		return err
	}
	_, err = req.OpenReply(reply)
	return err
}
