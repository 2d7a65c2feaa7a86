//go:build cgo

package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/caddy-drm/caddy-drm/internal/testpki"
)

// requireSoftHSM skips under -short without the tools, and fails
// without them otherwise (make test installs them).
func requireSoftHSM(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"softhsm2-util", "pkcs11-tool", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("%s is not installed", tool)
			}
			t.Fatalf("%s is not installed (scripts/deps.sh installs softhsm2, opensc and openssl)", tool)
		}
	}
}

func newCard(t *testing.T, keyType string) *testpki.Card {
	t.Helper()
	requireSoftHSM(t)
	card, err := testpki.NewCard(t.TempDir(), keyType, "BI12345678", "Maria Silva", "1234")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", card.Conf)
	return card
}

func pinOf(p string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(p), nil } }

// TestCardSigns: with the right PIN, the card's key signs — PKCS #1 v1.5
// SHA-256 for RSA, ECDSA for EC — and Go's verifiers accept the
// signatures; the chain comes from the card, the sub-CA included, the
// root not.
func TestCardSigns(t *testing.T) {
	for _, c := range []struct {
		keyType string
		scheme  string
	}{{"rsa:2048", "rsa_pkcs1_sha256"}, {"ec", "ecdsa_secp256r1_sha256"}} {
		t.Run(c.keyType, func(t *testing.T) {
			card := newCard(t, c.keyType)
			tok, err := Open(Options{Module: testpki.SoftHSMModule, TokenLabel: card.Label}, pinOf(card.PIN))
			if err != nil {
				t.Fatal(err)
			}
			defer tok.Close()
			signer, chain, err := tok.Credential("")
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := x509.ParseCertificate(chain[0])
			if len(chain) != 2 || leaf.Subject.SerialNumber != "BI12345678" {
				t.Fatalf("a chain of %d, subject %s; want the card's certificate and its sub-CA", len(chain), leaf.Subject)
			}
			if got := signer.(interface{ SignatureSchemes() []string }).SignatureSchemes(); len(got) != 1 || got[0] != c.scheme {
				t.Fatalf("schemes %v, want %s", got, c.scheme)
			}
			digest := sha256.Sum256([]byte("the content a session signs"))
			sig, err := signer.Sign(nil, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			switch k := signer.Public().(type) {
			case *rsa.PublicKey:
				err = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig)
				if _, perr := signer.Sign(nil, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256}); perr == nil {
					t.Error("the card made an RSA-PSS signature it cannot make")
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(k, digest[:], sig) {
					err = errors.New("ECDSA signature does not verify")
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			// By label, as the Citizen Card's key is found.
			if _, _, err := tok.Credential(testpki.CardKeyLabel); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTokenRefusals: each failure a user can act on has its own error.
func TestTokenRefusals(t *testing.T) {
	card := newCard(t, "ec")
	for _, c := range []struct {
		name string
		opts Options
		pin  string
		want error
		text string
	}{
		{"wrong PIN", Options{Module: testpki.SoftHSMModule, TokenLabel: card.Label}, "9999", ErrWrongPIN, `token "CARTAO DE CIDADAO"`},
		{"no such token", Options{Module: testpki.SoftHSMModule, TokenLabel: "YUBIKEY"}, card.PIN, ErrNoToken, `present: "CARTAO DE CIDADAO"`},
		{"no such module", Options{Module: "/usr/lib/no-pkcs11.so", TokenLabel: card.Label}, card.PIN, ErrNoModule, "no-pkcs11.so"},
		{"a file that is not a module", Options{Module: "/etc/hostname", TokenLabel: card.Label}, card.PIN, ErrNoModule, "does not load"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := Open(c.opts, pinOf(c.pin))
			if err == nil {
				tok.Close()
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("got %v, want %v naming %q", err, c.want, c.text)
			}
			if strings.Contains(err.Error(), c.pin) {
				t.Fatalf("the error shows the PIN: %v", err)
			}
		})
	}
	tok, err := Open(Options{Module: testpki.SoftHSMModule, TokenLabel: card.Label}, pinOf(card.PIN))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if _, _, err := tok.Credential("SIGNATURE KEY"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("a key label the card lacks: %v", err)
	}
}

// TestDescribeCodes: the states SoftHSM cannot produce (a locked PIN, the
// last try, a removed card) map from their PKCS#11 codes.
func TestDescribeCodes(t *testing.T) {
	for _, c := range []struct {
		code  uint
		flags uint
		want  error
		text  string
	}{
		{pkcs11.CKR_PIN_INCORRECT, 0, ErrWrongPIN, "wrong PIN"},
		{pkcs11.CKR_PIN_INCORRECT, pkcs11.CKF_USER_PIN_COUNT_LOW, ErrWrongPIN, "few tries left"},
		{pkcs11.CKR_PIN_INCORRECT, pkcs11.CKF_USER_PIN_FINAL_TRY | pkcs11.CKF_USER_PIN_COUNT_LOW, ErrWrongPIN, "one try left"},
		{pkcs11.CKR_PIN_LOCKED, 0, ErrPINLocked, "PUK"},
		{pkcs11.CKR_DEVICE_REMOVED, 0, ErrNoToken, "removed"},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, 0, ErrNoToken, "removed"},
	} {
		err := describeCode(c.code, "CARD", c.flags)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("code %#x flags %#x: %v, want %v saying %q", c.code, c.flags, err, c.want, c.text)
		}
	}
}

// TestCardPrefersItsAuthenticationKey: a card also holds a signature key
// with its certificate; without a label, the authentication key signs.
func TestCardPrefersItsAuthenticationKey(t *testing.T) {
	card := newCard(t, "ec")
	sigCert, sigKey, err := card.SubCA.Issue("signature", "/C=PT/serialNumber=BI12345678/CN=Maria Silva (signature)", testpki.ClientExt)
	if err != nil {
		t.Fatal(err)
	}
	if err := card.ImportKey(sigKey, "46", "CITIZEN SIGNATURE KEY"); err != nil {
		t.Fatal(err)
	}
	if err := card.ImportCert(sigCert, "46", "CITIZEN SIGNATURE CERTIFICATE"); err != nil {
		t.Fatal(err)
	}
	tok, err := Open(Options{Module: testpki.SoftHSMModule, TokenLabel: card.Label}, pinOf(card.PIN))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	_, chain, err := tok.Credential("")
	if err != nil {
		t.Fatal(err)
	}
	if leaf, _ := x509.ParseCertificate(chain[0]); strings.Contains(leaf.Subject.CommonName, "signature") {
		t.Fatalf("the signature key was chosen: %s", leaf.Subject)
	}
}
