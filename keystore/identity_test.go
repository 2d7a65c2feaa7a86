package keystore

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadIdentityLegacyKeyFormats loads keys in the SEC 1 and PKCS#1
// encodings that openssl and older tools write.
func TestLoadIdentityLegacyKeyFormats(t *testing.T) {
	for _, keyType := range []string{"p256", "p384", "rsa"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			files := sharedPKI(t, keyType, 0)
			want, err := LoadIdentity(files.ServerCert, files.ServerKey)
			if err != nil {
				t.Fatal(err)
			}
			var legacy []byte
			switch key := want.Signer.(type) {
			case *ecdsa.PrivateKey:
				der, err := x509.MarshalECPrivateKey(key)
				if err != nil {
					t.Fatal(err)
				}
				// openssl ecparam -genkey puts the curve first.
				legacy = pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x00}})
				legacy = append(legacy, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
			case *rsa.PrivateKey:
				legacy = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
			}
			keyFile := filepath.Join(t.TempDir(), "legacy.key")
			writeFile(t, keyFile, legacy)
			got, err := LoadIdentity(files.ServerCert, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Leaf.Equal(want.Leaf) || !want.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(got.Signer.Public()) {
				t.Error("legacy key loaded as a different identity")
			}
		})
	}
}

func TestLoadIdentityMismatch(t *testing.T) {
	a := sharedPKI(t, "p256", 0)
	for name, keyFile := range map[string]string{
		"same type, other PKI": sharedPKI(t, "p256", 1).ServerKey,
		"other type":           sharedPKI(t, "ed25519", 0).ServerKey,
		"root key":             a.RootKey,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadIdentity(a.ServerCert, keyFile)
			if !errors.Is(err, ErrKeyMismatch) {
				t.Fatalf("got %v, want ErrKeyMismatch", err)
			}
			if !strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), a.ServerCert) {
				t.Errorf("error %q does not name both files", err)
			}
		})
	}
}

func TestLoadIdentityUnsupportedKey(t *testing.T) {
	files := sharedPKI(t, "p256", 0)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"P-224": p224, "RSA-1024": rsa1024, "X25519": x25519} {
		t.Run(name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(t.TempDir(), "weak.key")
			writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			_, err = LoadIdentity(files.ServerCert, keyFile)
			if !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("got %v, want ErrUnsupportedKey", err)
			}
			if !strings.Contains(err.Error(), keyFile) {
				t.Errorf("error %q does not name the key file", err)
			}
		})
	}
}

func TestLoadIdentityBadFiles(t *testing.T) {
	files := sharedPKI(t, "p256", 0)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	empty := filepath.Join(dir, "empty.pem")
	writeFile(t, empty, []byte("no PEM here\n"))
	garbageCert := filepath.Join(dir, "garbage.crt")
	writeFile(t, garbageCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))
	garbageKey := filepath.Join(dir, "garbage.key")
	writeFile(t, garbageKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}))
	encryptedKey := filepath.Join(dir, "encrypted.key")
	writeFile(t, encryptedKey, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("junk")}))

	for _, tc := range []struct {
		name, cert, key, blame string
	}{
		{"missing cert", missing, files.ServerKey, missing},
		{"missing key", files.ServerCert, missing, missing},
		{"cert without PEM", empty, files.ServerKey, empty},
		{"key without PEM", files.ServerCert, empty, empty},
		{"key file holds a certificate", files.ServerCert, files.ServerCert, files.ServerCert},
		{"garbage cert", garbageCert, files.ServerKey, garbageCert},
		{"garbage key", files.ServerCert, garbageKey, garbageKey},
		{"encrypted key", files.ServerCert, encryptedKey, encryptedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadIdentity(tc.cert, tc.key)
			if err == nil {
				t.Fatal("LoadIdentity succeeded")
			}
			if !strings.Contains(err.Error(), tc.blame) {
				t.Errorf("error %q does not name %s", err, tc.blame)
			}
		})
	}
	if _, err := LoadIdentity(missing, files.ServerKey); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
}

// TestIntermediates checks chains longer than InitPKI makes: LoadIdentity
// keeps the intermediates in order and VerifyChain uses them.
func TestIntermediates(t *testing.T) {
	rootKey, interKey, leafKey := mustKey(t, "p256"), mustKey(t, "p384"), mustKey(t, "ed25519")
	root := issue(t, caTemplate("test root", 1), rootKey, nil, nil)
	inter := issue(t, caTemplate("test intermediate", 0), interKey, root, rootKey)
	leaf := issue(t, serverTemplate("media.example"), leafKey, inter, interKey)

	dir := t.TempDir()
	certFile, keyFile, rootFile := filepath.Join(dir, "chain.crt"), filepath.Join(dir, "leaf.key"), filepath.Join(dir, "root.crt")
	writeFile(t, certFile, certPEM(leaf.Raw, inter.Raw))
	keyPEMBytes, err := keyPEM(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, keyPEMBytes)
	writeFile(t, rootFile, certPEM(root.Raw))

	id, err := LoadIdentity(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Chain) != 2 || !id.Leaf.Equal(leaf) {
		t.Fatalf("chain of %d, leaf %q", len(id.Chain), id.Leaf.Subject.CommonName)
	}
	roots, err := LoadRoots(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyChain(id.Chain, roots, "media.example", testNow); err != nil {
		t.Errorf("full chain: %v", err)
	}
	var authErr x509.UnknownAuthorityError
	if _, err := VerifyChain(id.Chain[:1], roots, "media.example", testNow); !errors.As(err, &authErr) {
		t.Errorf("chain without intermediate: got %v, want x509.UnknownAuthorityError", err)
	}
	certs, err := ParseChain(id.Chain)
	if err != nil || len(certs) != 2 || !certs[1].Equal(inter) {
		t.Errorf("ParseChain: %v", err)
	}
}

// TestRootForbidsIntermediates checks that the InitPKI root's MaxPathLen 0
// is enforced: even its own key cannot delegate through an intermediate.
func TestRootForbidsIntermediates(t *testing.T) {
	files := sharedPKI(t, "ed25519", 0)
	root, err := LoadIdentity(files.RootCert, files.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	interKey, leafKey := mustKey(t, "ed25519"), mustKey(t, "ed25519")
	inter := issue(t, caTemplate("rogue intermediate", 0), interKey, root.Leaf, root.Signer)
	leaf := issue(t, serverTemplate("localhost"), leafKey, inter, interKey)
	roots, err := LoadRoots(files.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	var invalid x509.CertificateInvalidError
	_, err = VerifyChain([][]byte{leaf.Raw, inter.Raw}, roots, "localhost", testNow)
	if !errors.Is(err, ErrUntrustedCertificate) || !errors.As(err, &invalid) || invalid.Reason != x509.TooManyIntermediates {
		t.Errorf("got %v, want ErrUntrustedCertificate wrapping TooManyIntermediates", err)
	}
}

func TestVerifyChainBadInput(t *testing.T) {
	files := sharedPKI(t, "p256", 0)
	id, err := LoadIdentity(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := LoadRoots(files.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyChain(id.Chain, nil, "localhost", testNow); err == nil {
		t.Error("nil roots accepted")
	}
	for name, chain := range map[string][][]byte{
		"empty":                nil,
		"garbage":              {[]byte("junk")},
		"garbage intermediate": {id.Chain[0], []byte("junk")},
	} {
		if _, err := VerifyChain(chain, roots, "localhost", testNow); !errors.Is(err, ErrUntrustedCertificate) {
			t.Errorf("%s chain: got %v, want ErrUntrustedCertificate", name, err)
		}
		if _, err := ParseChain(chain); err == nil || !strings.HasPrefix(err.Error(), "keystore: ") {
			t.Errorf("ParseChain(%s) = %v, want a keystore error", name, err)
		}
	}
}

func TestLoadRoots(t *testing.T) {
	a, b := sharedPKI(t, "p256", 0), sharedPKI(t, "ed25519", 0)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.crt")
	writeFile(t, bundle, append(readFile(t, a.RootCert), readFile(t, b.RootCert)...))
	roots, err := LoadRoots(bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range []Files{a, b} {
		id, err := LoadIdentity(files.ServerCert, files.ServerKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyChain(id.Chain, roots, "localhost", testNow); err != nil {
			t.Errorf("bundle does not trust %s: %v", files.Dir, err)
		}
	}

	empty := filepath.Join(dir, "empty.crt")
	writeFile(t, empty, []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"))
	for name, file := range map[string]string{
		"server certificate": a.ServerCert,
		"no certificates":    empty,
		"missing file":       filepath.Join(dir, "missing.crt"),
	} {
		if _, err := LoadRoots(file); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: got %v, want an error naming %s", name, err, file)
		}
	}
}
