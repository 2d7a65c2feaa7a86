package keystore

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitPKICAs: the purpose CAs are self-signed CAs of InitPKI's key
// type, each with a key of its own, allowed to sign leaves and CRLs but
// no intermediate.
func TestInitPKICAs(t *testing.T) {
	for _, keyType := range keyTypes {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			files := sharedPKI(t, keyType, 0)
			root, err := LoadIdentity(files.RootCert, files.RootKey)
			if err != nil {
				t.Fatal(err)
			}
			keys := [][]byte{root.Leaf.RawSubjectPublicKeyInfo}
			for _, ca := range AllCAs() {
				id, err := loadCA(files, ca)
				if err != nil {
					t.Fatal(err)
				}
				c := id.Leaf
				checkKeyType(t, keyType, c.PublicKey)
				if c.Subject.CommonName != "caddy-drm development "+string(ca)+" CA" {
					t.Errorf("%s: CN %q", ca, c.Subject.CommonName)
				}
				if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
					t.Errorf("%s: IsCA=%v MaxPathLen=%d MaxPathLenZero=%v", ca, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
				}
				if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(c.ExtKeyUsage) != 0 {
					t.Errorf("%s: key usage %v, extended %v", ca, c.KeyUsage, c.ExtKeyUsage)
				}
				if !bytes.Equal(c.RawIssuer, c.RawSubject) || c.CheckSignatureFrom(c) != nil {
					t.Errorf("%s: not self-signed", ca)
				}
				if !c.NotBefore.Equal(testNow.Add(-backdate)) || !c.NotAfter.Equal(testNow.Add(rootValidity)) {
					t.Errorf("%s: validity %v to %v", ca, c.NotBefore, c.NotAfter)
				}
				checkSerial(t, c)
				for _, k := range keys {
					if bytes.Equal(k, c.RawSubjectPublicKeyInfo) {
						t.Errorf("%s shares a key with another CA", ca)
					}
				}
				keys = append(keys, c.RawSubjectPublicKeyInfo)
			}
		})
	}
}

// TestInitPKIUpgrade: a directory made by the InitPKI of old
// (testdata/pki-v1: root and server only) gains the purpose CAs and their
// CRLs; its keys and certificates stay as they were, and our old README,
// unchanged, is replaced. An operator's README is kept.
func TestInitPKIUpgrade(t *testing.T) {
	for _, ownReadme := range []bool{false, true} {
		t.Run(map[bool]string{false: "our README", true: "operator's README"}[ownReadme], func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, filepath.Join("testdata", "pki-v1"))
			if ownReadme {
				writeFile(t, filepath.Join(dir, readmeName), []byte("operator notes\n"))
			}
			before := snapshot(t, dir)
			files, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"})
			if err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, dir)
			if len(after) != completeFiles {
				t.Errorf("upgraded directory holds %d files, want %d", len(after), completeFiles)
			}
			for _, name := range []string{rootCertName, rootKeyName, serverCertName, serverKeyName} {
				if !bytes.Equal(before[name], after[name]) {
					t.Errorf("%s changed", name)
				}
			}
			gotReadme := string(after[readmeName])
			if ownReadme && gotReadme != "operator notes\n" || !ownReadme && gotReadme != readme {
				t.Errorf("README.txt now holds %.60q…", gotReadme)
			}
			checkModes(t, files)
			for _, ca := range AllCAs() {
				id, err := loadCA(files, ca)
				if err != nil {
					t.Fatal(err)
				}
				checkKeyType(t, "ed25519", id.Leaf.PublicKey)
			}
			again := snapshot(t, dir)
			if _, err := InitPKI(dir, PKIOptions{}); err != nil || !sameSnapshot(again, snapshot(t, dir)) {
				t.Errorf("InitPKI on the upgraded directory: %v, or it changed the directory", err)
			}
		})
	}
}

// TestReadmeV1Hash: readmeV1SHA256 is the hash of the old README, so the
// upgrade recognises it.
func TestReadmeV1Hash(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, readmeName), readFile(t, filepath.Join("testdata", "pki-v1", readmeName)))
	if err := writeReadme(dir); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, readmeName)); string(got) != readme {
		t.Error("the old README was not recognised and replaced")
	}
}

// TestInitPKIIncompleteCAs: states that adding files cannot repair are
// reported as ErrIncompletePKI, and the directory left alone.
func TestInitPKIIncompleteCAs(t *testing.T) {
	for _, c := range []struct {
		name   string
		remove []string
		want   string // in the error
	}{
		{"half a CA pair", []string{"user-ca.key"}, "user-ca.key"},
		{"CRLs without their database", []string{"device-ca.revoked.json"}, "device-ca.revoked.json"},
		{"a database without its CA", []string{"user-ca.crt", "user-ca.key"}, "user-ca.revoked.json"},
		{"CAs without root and server", []string{rootCertName, rootKeyName, serverCertName, serverKeyName}, rootCertName},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
			for _, name := range c.remove {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, dir)
			_, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"})
			if !errors.Is(err, ErrIncompletePKI) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrIncompletePKI naming %s", err, c.want)
			}
			if !sameSnapshot(before, snapshot(t, dir)) {
				t.Error("InitPKI changed the directory")
			}
		})
	}
}

// TestInitPKIMissingCA: a whole CA pair missing is added (as in an
// upgrade), the rest untouched.
func TestInitPKIMissingCA(t *testing.T) {
	dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
	for _, name := range []string{"content-ca.crt", "content-ca.key"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, dir)
	files, err := InitPKI(dir, PKIOptions{KeyType: "ed25519"})
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	for name, data := range before {
		if !bytes.Equal(after[name], data) {
			t.Errorf("%s changed", name)
		}
	}
	if _, err := loadCA(files, ContentCA); err != nil {
		t.Error(err)
	}
}

// TestInitPKIBadCAs: complete directories whose CAs are not fit for
// their purpose are refused.
func TestInitPKIBadCAs(t *testing.T) {
	for _, c := range []struct {
		name string
		copy map[string]string // to: from, within the directory
		want string
	}{
		{"one key for two CAs", map[string]string{"user-ca.crt": "device-ca.crt", "user-ca.key": "device-ca.key"}, "share a key"},
		{"the root's key for a CA", map[string]string{"content-ca.crt": rootCertName, "content-ca.key": rootKeyName}, "share a key"},
		{"a leaf for a CA", map[string]string{"device-ca.crt": serverCertName, "device-ca.key": serverKeyName}, "not a CA certificate"},
		{"a CA's key that is not its own", map[string]string{"device-ca.key": "user-ca.key"}, "does not match"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
			for to, from := range c.copy {
				writeFile(t, filepath.Join(dir, to), readFile(t, filepath.Join(dir, from)))
			}
			if _, err := InitPKI(dir, PKIOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// TestInitPKIInitialCRLs: device-ca and user-ca start with an empty full
// CRL numbered 1 and an empty delta CRL numbered 2 based on it; content-ca
// has none.
func TestInitPKIInitialCRLs(t *testing.T) {
	files := sharedPKI(t, "p256", 0)
	for _, ca := range AllCAs() {
		f := files.CA(ca)
		if !ca.crlAtInit() {
			for _, p := range []string{f.CRL, f.DeltaCRL, f.Database} {
				if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s exists: %v", filepath.Base(p), err)
				}
			}
			continue
		}
		full, delta := loadCRLFile(t, f.CRL), loadCRLFile(t, f.DeltaCRL)
		checkCRL(t, full, files, ca, 1, 0, testNow, defaultNextUpdate)
		checkCRL(t, delta, files, ca, 2, 1, testNow, defaultNextUpdate)
		if len(full.RevokedCertificateEntries)+len(delta.RevokedCertificateEntries) != 0 {
			t.Errorf("%s: initial CRLs list revocations", ca)
		}
	}
}

// copyDir copies the regular files of dir into a new temporary directory
// (mode 0700) and returns it, so tests can modify a shared PKI.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "pki")
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(e.Name(), ".key") || strings.HasSuffix(e.Name(), ".json") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), readFile(t, filepath.Join(dir, e.Name())), mode); err != nil {
			t.Fatal(err)
		}
	}
	return to
}
