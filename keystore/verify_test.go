package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyChainPolicy: the leaf must be a leaf meant for serverAuth
// signatures, and every key of the path, root included, must meet the
// protocol's rule — at the edges of each rule.
func TestVerifyChainPolicy(t *testing.T) {
	p256, ed := mustKey(t, "p256"), mustKey(t, "ed25519")
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, rsa2047, rsa2048 := rsaKey(1024), rsaKey(2047), rsaKey(2048)

	server := func(mod func(*x509.Certificate)) func() *x509.Certificate {
		return func() *x509.Certificate {
			tmpl := serverTemplate("localhost")
			if mod != nil {
				mod(tmpl)
			}
			return tmpl
		}
	}
	for _, c := range []struct {
		name      string
		rootKey   crypto.Signer
		interKey  crypto.Signer // nil: the root signs the leaf
		leafKey   crypto.Signer
		leaf      func() *x509.Certificate
		wantError string // "" when the chain is good
	}{
		{"good", p256, nil, ed, server(nil), ""},
		{"good, through an intermediate", p256, p256, ed, server(nil), ""},
		{"serverAuth among others", p256, nil, ed, server(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}), ""},
		{"no extended key usage", p256, nil, ed, server(func(c *x509.Certificate) { c.ExtKeyUsage = nil }), "does not name the serverAuth"},
		{"extended key usage any", p256, nil, ed, server(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
		}), "does not name the serverAuth"},
		{"clientAuth only", p256, nil, ed, server(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}), "does not name the serverAuth"},
		{"no key usage", p256, nil, ed, server(func(c *x509.Certificate) { c.KeyUsage = 0 }), "lacks the digitalSignature"},
		{"keyEncipherment only", p256, nil, rsa2048, server(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }), "lacks the digitalSignature"},
		{"a CA as leaf", p256, nil, ed, server(func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage |= x509.KeyUsageCertSign
		}), "is a CA certificate"},
		{"certSign on a leaf", p256, nil, ed, server(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }), "is a CA certificate"},
		{"RSA-2048 leaf", p256, nil, rsa2048, server(nil), ""},
		{"RSA-2047 leaf", p256, nil, rsa2047, server(nil), "2047-bit RSA"},
		{"RSA-2048 intermediate", p256, rsa2048, ed, server(nil), ""},
		{"RSA-1024 intermediate", p256, rsa1024, ed, server(nil), "1024-bit RSA"},
		{"RSA-2048 root", rsa2048, nil, ed, server(nil), ""},
		{"RSA-1024 root", rsa1024, nil, ed, server(nil), "1024-bit RSA"},
		{"P-521 root", p521, nil, ed, server(nil), "P-521"},
		{"expired leaf", p256, nil, ed, server(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = testNow.Add(-2*time.Hour), testNow.Add(-time.Second)
		}), "expired"},
		{"leaf not yet valid", p256, nil, ed, server(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = testNow.Add(time.Second), testNow.Add(time.Hour)
		}), "not yet valid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := issue(t, caTemplate("policy root", 1), c.rootKey, nil, nil)
			parent, parentKey := root, c.rootKey
			if c.interKey != nil {
				parent = issue(t, caTemplate("policy intermediate", 0), c.interKey, root, c.rootKey)
				parentKey = c.interKey
			}
			leaf := issue(t, c.leaf(), c.leafKey, parent, parentKey)
			chain := [][]byte{leaf.Raw}
			if c.interKey != nil {
				chain = append(chain, parent.Raw)
			}
			roots := x509.NewCertPool()
			roots.AddCert(root)
			got, err := VerifyChain(chain, roots, "localhost", testNow)
			checkVerdict(t, got, err, leaf, c.wantError)
		})
	}
}

func checkVerdict(t *testing.T, got *x509.Certificate, err error, leaf *x509.Certificate, wantError string) {
	t.Helper()
	if wantError == "" {
		if err != nil || !got.Equal(leaf) {
			t.Fatalf("refused a good chain: %v", err)
		}
		return
	}
	if !errors.Is(err, ErrUntrustedCertificate) || !strings.Contains(err.Error(), wantError) {
		t.Fatalf("got %v, want ErrUntrustedCertificate saying %q", err, wantError)
	}
}

// TestVerifyChainPolicyOpenSSL: the same rules on certificates openssl
// makes, as operators' own PKIs do.
func TestVerifyChainPolicyOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "root.key", "-out", "root.crt",
		"-subj", "/CN=openssl root", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	roots, err := LoadRoots(filepath.Join(dir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, key, ext, wantError string
	}{
		{"good", "ec:P-256", "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature", ""},
		{"good RSA-2048", "rsa:2048", "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment", ""},
		{"no extended key usage", "ec:P-256", "keyUsage=digitalSignature", "does not name the serverAuth"},
		{"anyExtendedKeyUsage", "ec:P-256", "extendedKeyUsage=anyExtendedKeyUsage\nkeyUsage=digitalSignature", "does not name the serverAuth"},
		{"no key usage", "ec:P-256", "extendedKeyUsage=serverAuth", "lacks the digitalSignature"},
		{"CA:TRUE leaf", "ec:P-256", "basicConstraints=critical,CA:TRUE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyCertSign", "is a CA certificate"},
		{"RSA-1024 leaf", "rsa:1024", "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature", "1024-bit RSA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			keyOpts := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + strings.TrimPrefix(c.key, "ec:")}
			if bits, ok := strings.CutPrefix(c.key, "rsa:"); ok {
				keyOpts = []string{"-newkey", "rsa:" + bits}
			}
			name := strings.ReplaceAll(c.name, " ", "_")
			ext := filepath.Join(dir, name+".ext")
			if err := os.WriteFile(ext, []byte("subjectAltName=DNS:localhost\n"+c.ext+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			run(append(append([]string{"req", "-new"}, keyOpts...), "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN=localhost")...)
			run("x509", "-req", "-in", name+".csr", "-CA", "root.crt", "-CAkey", "root.key", "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", name+".crt")
			block, _ := pem.Decode(readFile(t, filepath.Join(dir, name+".crt")))
			leaf, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			got, err := VerifyChain([][]byte{leaf.Raw}, roots, "localhost", time.Now())
			checkVerdict(t, got, err, leaf, c.wantError)
		})
	}
}
