package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInitPKIKeyTypes runs the whole life cycle for every key type:
// create, load, verify (and fail to verify), sign.
func TestInitPKIKeyTypes(t *testing.T) {
	for _, keyType := range keyTypes {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			files := sharedPKI(t, keyType, 0)
			for _, p := range []string{files.Dir, files.RootCert, files.RootKey, files.ServerCert, files.ServerKey} {
				if !filepath.IsAbs(p) {
					t.Errorf("path %q is not absolute", p)
				}
			}
			checkModes(t, files)

			id, err := LoadIdentity(files.ServerCert, files.ServerKey)
			if err != nil {
				t.Fatal(err)
			}
			checkKeyType(t, keyType, id.Leaf.PublicKey)
			if len(id.Chain) != 1 {
				t.Fatalf("chain has %d certificates, want 1", len(id.Chain))
			}
			root, err := LoadIdentity(files.RootCert, files.RootKey)
			if err != nil {
				t.Fatal(err)
			}
			checkKeyType(t, keyType, root.Leaf.PublicKey)
			checkRoot(t, root.Leaf)
			checkServer(t, id.Leaf, root.Leaf)

			roots, err := LoadRoots(files.RootCert)
			if err != nil {
				t.Fatal(err)
			}
			for _, host := range []string{"localhost", "127.0.0.1", "::1", ""} {
				leaf, err := VerifyChain(id.Chain, roots, host, testNow)
				if err != nil {
					t.Errorf("VerifyChain(%q): %v", host, err)
				} else if !leaf.Equal(id.Leaf) {
					t.Errorf("VerifyChain(%q) returned a different leaf", host)
				}
			}

			var hostErr x509.HostnameError
			_, err = VerifyChain(id.Chain, roots, "example.com", testNow)
			if !errors.Is(err, ErrUntrustedCertificate) || !errors.As(err, &hostErr) {
				t.Errorf("wrong host: got %v, want ErrUntrustedCertificate wrapping x509.HostnameError", err)
			}

			otherRoots, err := LoadRoots(sharedPKI(t, keyType, 1).RootCert)
			if err != nil {
				t.Fatal(err)
			}
			var authErr x509.UnknownAuthorityError
			_, err = VerifyChain(id.Chain, otherRoots, "localhost", testNow)
			if !errors.Is(err, ErrUntrustedCertificate) || !errors.As(err, &authErr) {
				t.Errorf("other root: got %v, want ErrUntrustedCertificate wrapping x509.UnknownAuthorityError", err)
			}

			for name, when := range map[string]time.Time{
				"expired":       testNow.Add(defaultServerValidity + time.Minute),
				"not yet valid": testNow.Add(-backdate - time.Minute),
			} {
				var invalid x509.CertificateInvalidError
				_, err = VerifyChain(id.Chain, roots, "localhost", when)
				if !errors.Is(err, ErrUntrustedCertificate) || !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
					t.Errorf("%s: got %v, want ErrUntrustedCertificate wrapping an Expired x509.CertificateInvalidError", name, err)
				}
			}

			checkSigner(t, keyType, id)
			checkSigner(t, keyType, root)
		})
	}
}

func checkModes(t *testing.T, files Files) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return // Windows has no Unix permission bits.
	}
	want := map[string]fs.FileMode{
		files.Dir:                            0o700 | fs.ModeDir,
		files.RootKey:                        0o600,
		files.ServerKey:                      0o600,
		files.RootCert:                       0o644,
		files.ServerCert:                     0o644,
		filepath.Join(files.Dir, readmeName): 0o644,
	}
	keys := []string{files.RootKey, files.ServerKey}
	for _, ca := range AllCAs() {
		f := files.CA(ca)
		want[f.Cert], want[f.Key] = 0o644, 0o600
		keys = append(keys, f.Key)
		if ca.crlAtInit() {
			want[f.Database], want[f.CRL], want[f.DeltaCRL] = 0o600, 0o644, 0o644
		}
	}
	for path, want := range want {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode(); got != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(path), got, want)
		}
	}
	for _, path := range keys {
		block, _ := pem.Decode(readFile(t, path))
		if block == nil || block.Type != "PRIVATE KEY" {
			t.Errorf("%s: want a PKCS#8 PRIVATE KEY PEM block", filepath.Base(path))
		}
	}
}

func checkKeyType(t *testing.T, keyType string, pub crypto.PublicKey) {
	t.Helper()
	ok := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = keyType == "ed25519"
	case *ecdsa.PublicKey:
		ok = keyType == "p256" && k.Curve == elliptic.P256() || keyType == "p384" && k.Curve == elliptic.P384()
	case *rsa.PublicKey:
		ok = keyType == "rsa" && k.N.BitLen() == rsaBits
	}
	if !ok {
		t.Errorf("key type %q produced a %T", keyType, pub)
	}
}

func checkRoot(t *testing.T, root *x509.Certificate) {
	t.Helper()
	if root.Subject.CommonName != "caddy-drm development root" {
		t.Errorf("root CN %q", root.Subject.CommonName)
	}
	if !root.IsCA || !root.BasicConstraintsValid || root.MaxPathLen != 0 || !root.MaxPathLenZero {
		t.Errorf("root: IsCA=%v BasicConstraintsValid=%v MaxPathLen=%d MaxPathLenZero=%v",
			root.IsCA, root.BasicConstraintsValid, root.MaxPathLen, root.MaxPathLenZero)
	}
	if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root key usage %v", root.KeyUsage)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if !root.NotBefore.Equal(testNow.Add(-backdate)) || !root.NotAfter.Equal(testNow.Add(rootValidity)) {
		t.Errorf("root validity %v to %v", root.NotBefore, root.NotAfter)
	}
	checkSerial(t, root)
}

func checkServer(t *testing.T, leaf, root *x509.Certificate) {
	t.Helper()
	if leaf.Subject.CommonName != "caddy-drm server" {
		t.Errorf("server CN %q", leaf.Subject.CommonName)
	}
	if leaf.IsCA {
		t.Error("server certificate is a CA")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("server key usage %v", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("server extended key usage %v", leaf.ExtKeyUsage)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("server DNS names %v", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("server IP addresses %v", leaf.IPAddresses)
	}
	if !leaf.NotBefore.Equal(testNow.Add(-backdate)) || !leaf.NotAfter.Equal(testNow.Add(defaultServerValidity)) {
		t.Errorf("server validity %v to %v", leaf.NotBefore, leaf.NotAfter)
	}
	if err := leaf.CheckSignatureFrom(root); err != nil {
		t.Errorf("server certificate not signed by root: %v", err)
	}
	checkSerial(t, leaf)
	if leaf.SerialNumber.Cmp(root.SerialNumber) == 0 {
		t.Error("root and server share a serial number")
	}
}

func checkSerial(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("%s: serial %v is not a positive 128-bit number", cert.Subject.CommonName, cert.SerialNumber)
	}
}

// checkSigner signs with id.Signer the way a peer would for each key type
// and checks the signature against the certificate's public key.
func checkSigner(t *testing.T, keyType string, id *Identity) {
	t.Helper()
	msg := []byte("caddy-drm handshake transcript")
	var (
		sig  []byte
		err  error
		algo x509.SignatureAlgorithm
	)
	switch keyType {
	case "ed25519":
		algo = x509.PureEd25519
		sig, err = id.Signer.Sign(rand.Reader, msg, crypto.Hash(0))
	case "p256":
		algo = x509.ECDSAWithSHA256
		d := sha256.Sum256(msg)
		sig, err = id.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
	case "p384":
		algo = x509.ECDSAWithSHA384
		d := sha512.Sum384(msg)
		sig, err = id.Signer.Sign(rand.Reader, d[:], crypto.SHA384)
	case "rsa":
		algo = x509.SHA256WithRSAPSS
		d := sha256.Sum256(msg)
		sig, err = id.Signer.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if err := id.Leaf.CheckSignature(algo, msg, sig); err != nil {
		t.Errorf("signature by Identity.Signer does not verify with Leaf.PublicKey: %v", err)
	}
	if err := id.Leaf.CheckSignature(algo, []byte("tampered"), sig); err == nil {
		t.Error("signature verified for a different message")
	}
}

func TestInitPKIIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first, err := InitPKI(dir, PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if len(before) != completeFiles {
		t.Fatalf("PKI directory holds %d files, want %d", len(before), completeFiles)
	}
	// Different options must not matter: an existing PKI is reused as is.
	second, err := InitPKI(dir, PKIOptions{KeyType: "ed25519", Hosts: []string{"other.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("second InitPKI returned %+v, want %+v", second, first)
	}
	if !sameSnapshot(before, snapshot(t, dir)) {
		t.Error("second InitPKI changed the directory")
	}
	// A relative path names the same files.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, dir)
	if err != nil {
		t.Skip("no relative path to the temporary directory")
	}
	third, err := InitPKI(rel, PKIOptions{})
	if err != nil || third != first {
		t.Errorf("InitPKI(%q) = %+v, %v; want %+v", rel, third, err, first)
	}
}

// TestInitPKIIncomplete: a pair with one half missing is reported, and
// the directory left alone.
func TestInitPKIIncomplete(t *testing.T) {
	for _, missing := range []string{rootCertName, rootKeyName, serverCertName, serverKeyName,
		"device-ca.crt", "device-ca.key", "user-ca.crt", "user-ca.key", "content-ca.crt", "content-ca.key"} {
		t.Run(missing, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"}); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"})
			if !errors.Is(err, ErrIncompletePKI) {
				t.Fatalf("got %v, want ErrIncompletePKI", err)
			}
			if !strings.Contains(err.Error(), missing) {
				t.Errorf("error %q does not name the missing file", err)
			}
			if !sameSnapshot(before, snapshot(t, dir)) {
				t.Error("InitPKI changed an incomplete directory")
			}
		})
	}

	t.Run("stray root.crt", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, rootCertName), []byte("not a certificate"))
		if _, err := InitPKI(dir, PKIOptions{}); !errors.Is(err, ErrIncompletePKI) {
			t.Fatalf("got %v, want ErrIncompletePKI", err)
		}
		if got := snapshot(t, dir); len(got) != 1 {
			t.Errorf("directory holds %d files, want 1", len(got))
		}
	})
}

// TestInitPKIInconsistent checks that a complete but mismatched directory
// is reported rather than returned as usable.
func TestInitPKIInconsistent(t *testing.T) {
	other := sharedPKI(t, "ed25519", 0)
	for name, replace := range map[string][]string{
		"foreign server key":         {serverKeyName},
		"foreign server certificate": {serverCertName, serverKeyName},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"}); err != nil {
				t.Fatal(err)
			}
			for _, f := range replace {
				writeFile(t, filepath.Join(dir, f), readFile(t, filepath.Join(other.Dir, f)))
			}
			if _, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"}); err == nil {
				t.Fatal("InitPKI accepted an inconsistent PKI")
			}
		})
	}
}

func TestInitPKIOptions(t *testing.T) {
	dir := t.TempDir()
	files, err := InitPKI(dir, PKIOptions{
		KeyType:  "ed25519",
		Hosts:    []string{"media.example", "10.1.2.3", "2001:db8::1"},
		Validity: 48 * time.Hour,
		Now:      func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := LoadIdentity(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Leaf.NotAfter.Equal(testNow.Add(48 * time.Hour)) {
		t.Errorf("NotAfter %v, want %v", id.Leaf.NotAfter, testNow.Add(48*time.Hour))
	}
	roots, err := LoadRoots(files.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"media.example", "10.1.2.3", "2001:db8::1"} {
		if _, err := VerifyChain(id.Chain, roots, host, testNow); err != nil {
			t.Errorf("VerifyChain(%q): %v", host, err)
		}
	}
	if _, err := VerifyChain(id.Chain, roots, "localhost", testNow); !errors.Is(err, ErrUntrustedCertificate) {
		t.Errorf("localhost is not among Hosts, but VerifyChain returned %v", err)
	}
}

func TestInitPKIBadOptions(t *testing.T) {
	for name, opts := range map[string]PKIOptions{
		"key type":          {KeyType: "dsa"},
		"negative validity": {Validity: -time.Hour},
		"validity > root":   {Validity: rootValidity + time.Hour},
		"empty host":        {Hosts: []string{"localhost", ""}},
		"URL host":          {Hosts: []string{"https://media.example/"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := InitPKI(dir, opts); err == nil {
				t.Fatal("InitPKI accepted bad options")
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("InitPKI created the directory despite failing: %v", err)
			}
		})
	}
	if _, err := InitPKI(t.TempDir(), PKIOptions{KeyType: "dsa"}); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("unknown key type: got %v, want ErrUnsupportedKey", err)
	}
}

// TestInitPKIConcurrent races several initialisations of one directory:
// the result must be one consistent PKI.
func TestInitPKIConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var (
		wg      sync.WaitGroup
		results [n]Files
		errs    [n]error
	)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = InitPKI(dir, PKIOptions{KeyType: "ed25519"}) })
	}
	wg.Wait()
	want, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"})
	if err != nil {
		t.Fatalf("PKI left by concurrent initialisation is unusable: %v", err)
	}
	// The directory lock serialises them: every one succeeds.
	for i := range n {
		if errs[i] != nil {
			t.Errorf("InitPKI %d: %v", i, errs[i])
		} else if results[i] != want {
			t.Errorf("got %+v, want %+v", results[i], want)
		}
	}
	if got := snapshot(t, dir); len(got) != completeFiles {
		t.Errorf("directory holds %d files, want %d (temporary files left behind?)", len(got), completeFiles)
	}
}

func TestInitPKIKeepsReadme(t *testing.T) {
	dir := t.TempDir()
	mine := []byte("operator notes\n")
	writeFile(t, filepath.Join(dir, readmeName), mine)
	if _, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, readmeName)); string(got) != string(mine) {
		t.Errorf("README.txt overwritten with %q", got)
	}
}

func TestWriteNewNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	writeFile(t, path, []byte("old"))
	if err := writeNew(path, []byte("new"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("got %v, want fs.ErrExist", err)
	}
	if got := readFile(t, path); string(got) != "old" {
		t.Errorf("file now holds %q", got)
	}
	if got := snapshot(t, filepath.Dir(path)); len(got) != 1 {
		t.Errorf("directory holds %d files, want 1", len(got))
	}
}
