//go:build cgo

package protocol

import (
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/caddy-drm/caddy-drm/internal/testpki"
	"github.com/caddy-drm/caddy-drm/keystore/token"
)

// TestTokenSignatureReplay: a user signature made on a PKCS#11 token (a
// SoftHSM card, RSA PKCS #1 v1.5 as Citizen Cards sign) verifies in its
// session, and replayed into another session is refused.
func TestTokenSignatureReplay(t *testing.T) {
	for _, tool := range []string{"softhsm2-util", "pkcs11-tool", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("%s is not installed", tool)
			}
			t.Fatalf("%s is not installed (scripts/deps.sh installs it)", tool)
		}
	}
	card, err := testpki.NewCard(t.TempDir(), "rsa:2048", "BI12345678", "Maria Silva", "1234")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", card.Conf)
	tok, err := token.Open(token.Options{Module: testpki.SoftHSMModule, TokenLabel: card.Label},
		func() ([]byte, error) { return []byte(card.PIN), nil })
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	signer, chain, err := tok.Credential(testpki.CardKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(card.Root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	sub, _ := x509.ParseCertificate(chain[1])
	policy := &ClientAuthPolicy{Require: []string{CredentialUser}, Authorities: map[string][][]byte{CredentialUser: {sub.RawSubject}},
		Verify: func(_ string, chain [][]byte) (*x509.Certificate, error) {
			leaf, err := x509.ParseCertificate(chain[0])
			if err != nil {
				return nil, err
			}
			inter := x509.NewCertPool()
			for _, der := range chain[1:] {
				c, _ := x509.ParseCertificate(der)
				inter.AddCert(c)
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			return leaf, err
		}}
	cred := Credential{Kind: CredentialUser, Chain: chain, Signer: signer}

	a := newAuthPair(t, DefaultSuites()[0], policy)
	req, err := a.client.NewClientAuthRequest([]Credential{cred})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := a.server.OpenRequest(req.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if acc.clientAuth.Credentials[0].Scheme != schemeRSAPKCS1 {
		t.Fatalf("the card signed with %s", acc.clientAuth.Credentials[0].Scheme)
	}
	captured := acc.payload
	if _, err := a.server.Authenticate(acc); err != nil {
		t.Fatalf("the card's signature in its own session: %v", err)
	}
	b := newAuthPair(t, DefaultSuites()[0], policy)
	replayed, err := b.server.OpenRequest(b.client.newRequest(MsgClientAuth, captured).Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.server.Authenticate(replayed); !errors.Is(err, ErrCredentialRefused) || !errors.Is(err, errBadSignature) {
		t.Fatalf("the card's signature replayed into another session: %v", err)
	}
}
