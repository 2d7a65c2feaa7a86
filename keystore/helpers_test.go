package keystore

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// keyTypes lists every PKIOptions.KeyType InitPKI accepts.
var keyTypes = []string{"ed25519", "p256", "p384", "rsa"}

// testNow is the issuing time of shared PKIs. A fixed instant lets tests
// assert exact validity windows.
var testNow = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// sharedDir holds PKIs reused across tests, because generating RSA-3072
// keys under the race detector takes seconds. Tests must not modify them.
var sharedDir string

func TestMain(m *testing.M) {
	var err error
	sharedDir, err = os.MkdirTemp("", "keystore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(sharedDir)
	os.Exit(code)
}

var shared struct {
	sync.Mutex
	files map[string]Files
}

// sharedPKI returns a read-only PKI of keyType issued at testNow. Distinct
// slots give independent PKIs (different roots) of the same type.
func sharedPKI(t *testing.T, keyType string, slot int) Files {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	name := fmt.Sprintf("%s-%d", keyType, slot)
	if f, ok := shared.files[name]; ok {
		return f
	}
	f, err := InitPKI(filepath.Join(sharedDir, name), PKIOptions{
		KeyType: keyType,
		Now:     func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatalf("InitPKI(%s): %v", keyType, err)
	}
	if shared.files == nil {
		shared.files = map[string]Files{}
	}
	shared.files[name] = f
	return f
}

// completeFiles is the number of files InitPKI makes (the lock file
// aside): root and server pairs, three CA pairs, two CAs' database and
// CRLs, README.txt.
const completeFiles = 4 + 3*2 + 2*3 + 1

// snapshot returns the contents of every file in dir but the lock file
// (an empty file, made by whoever writes), to prove that a call changed
// nothing.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range entries {
		if e.Name() == lockName {
			continue
		}
		m[e.Name()] = readFile(t, filepath.Join(dir, e.Name()))
	}
	return m
}

func sameSnapshot(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for name, data := range a {
		if other, ok := b[name]; !ok || !bytes.Equal(data, other) {
			return false
		}
	}
	return true
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func certPEM(ders ...[]byte) []byte {
	var buf bytes.Buffer
	for _, der := range ders {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return buf.Bytes()
}

// issue signs a certificate for key with parent and parentKey, or
// self-signs it when parent is nil. Tests use it to build chains InitPKI
// never produces, such as ones with intermediates.
func issue(t *testing.T, tmpl *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testNow.Add(-time.Hour)
		tmpl.NotAfter = testNow.Add(time.Hour)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func caTemplate(name string, maxPathLen int) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

func serverTemplate(host string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: host},
		DNSNames:    []string{host},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

func mustKey(t *testing.T, keyType string) crypto.Signer {
	t.Helper()
	key, err := generateKey(keyType)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// runOpenSSL runs the openssl command in dir and returns its combined output.
// openssl is an implementation independent of crypto/x509, so tests use
// it to check what keystore writes.
func runOpenSSL(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (scripts/deps.sh installs it)")
	}
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
