package caddymodule

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runPKI runs `caddy drm pki ARGS...` in-process and returns its output.
func runPKI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := pkiCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestPKICommands runs every `caddy drm pki` command once, as an operator
// would, and checks what each says it wrote against the directory.
func TestPKICommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	in := func(name string) string { return filepath.Join(dir, name) }
	re := func(name string) string { return regexp.QuoteMeta(in(name)) }
	initFiles := []string{"root.crt", "root.key", "server.crt", "server.key",
		"device-ca.crt", "device-ca.key", "device-ca.revoked.json", "device-ca.crl", "device-ca.delta.crl",
		"user-ca.crt", "user-ca.key", "user-ca.revoked.json", "user-ca.crl", "user-ca.delta.crl",
		"content-ca.crt", "content-ca.key", "README.txt"}
	var wrote, kept []string
	for _, name := range initFiles {
		wrote, kept = append(wrote, "wrote "+re(name)), append(kept, "kept  "+re(name))
	}
	for _, c := range []struct {
		args []string
		want []string // the lines of output, regular expressions
	}{
		{[]string{"init", dir, "--key-type", "ed25519"}, wrote},
		{[]string{"init", dir}, kept},
		{[]string{"issue", "device", "tv-01", "--dir", dir, "--days", "30"}, []string{"wrote " + re("device-tv-01.crt"), "wrote " + re("device-tv-01.key")}},
		{[]string{"issue", "user", "--dir", dir, "--serial", "BI12345678", "--name", "Maria Silva", "--country", "PT", "--key-type", "rsa"},
			[]string{"wrote " + re("user-BI12345678.crt"), "wrote " + re("user-BI12345678.key")}},
		{[]string{"issue", "publisher", "acme", "--dir", dir, "--key-type", "p384"}, []string{"wrote " + re("publisher-acme.crt"), "wrote " + re("publisher-acme.key")}},
		// --dir defaults to the certificate's directory.
		{[]string{"revoke", in("device-tv-01.crt"), "--reason", "keyCompromise"}, []string{
			"revoked serial [0-9a-f]+ \\(CN=tv-01\\) of device-ca: keyCompromise", "wrote " + re("device-ca.revoked.json"), "wrote " + re("device-ca.delta.crl")}},
		{[]string{"crl", "--dir", dir, "--ca", "device", "--next-update", "2d"}, []string{
			"wrote " + re("device-ca.revoked.json"), "wrote " + re("device-ca.crl"), "wrote " + re("device-ca.delta.crl")}},
		{[]string{"crl", "--dir", dir}, []string{
			"wrote " + re("device-ca.revoked.json"), "wrote " + re("device-ca.crl"), "wrote " + re("device-ca.delta.crl"),
			"wrote " + re("user-ca.revoked.json"), "wrote " + re("user-ca.crl"), "wrote " + re("user-ca.delta.crl")}},
	} {
		out, err := runPKI(t, c.args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c.args, " "), err, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("%s: %d lines of output, want %d:\n%s", strings.Join(c.args, " "), len(lines), len(c.want), out)
			continue
		}
		for i, w := range c.want {
			if !regexp.MustCompile("^" + w + "$").MatchString(lines[i]) {
				t.Errorf("%s: line %d is %q, want %q", strings.Join(c.args, " "), i, lines[i], w)
			}
			if p, ok := strings.CutPrefix(lines[i], "wrote "); ok {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s says it wrote %s: %v", c.args[0], p, err)
				}
			}
		}
	}

	device := readCertFile(t, in("device-tv-01.crt"))
	if got := device.NotAfter.Sub(device.NotBefore); got != 30*24*time.Hour+time.Hour {
		t.Errorf("--days 30 gave a certificate valid for %v", got)
	}
	user := readCertFile(t, in("user-BI12345678.crt"))
	if k, ok := user.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("user --key-type rsa gave a %T, want RSA-2048", user.PublicKey)
	}
	block, _ := pem.Decode(readFileT(t, in("device-ca.crl")))
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(device.SerialNumber) != 0 {
		t.Errorf("device-ca.crl lists %d certificates, want the revoked device's", len(crl.RevokedCertificateEntries))
	}
	if crl.Number.Int64() != 6 {
		t.Errorf("device-ca.crl number %d, want 6 (1, 2 at init, 3 revoke, 4 and 5 crl --ca device, 6 crl)", crl.Number)
	}
}

// TestPKIInitUpgrade: init on a directory of the old init (root and
// server only; keystore's test data) says it kept those and wrote the CAs,
// and the README it replaced.
func TestPKIInitUpgrade(t *testing.T) {
	src := filepath.Join("..", "keystore", "testdata", "pki-v1")
	dir := filepath.Join(t.TempDir(), "pki")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root.crt", "root.key", "server.crt", "server.key", "README.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), readFileT(t, filepath.Join(src, name)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runPKI(t, "init", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"kept  " + filepath.Join(dir, "root.key"), "kept  " + filepath.Join(dir, "server.crt"),
		"wrote " + filepath.Join(dir, "device-ca.key"), "wrote " + filepath.Join(dir, "README.txt")} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestPKICommandErrors: bad arguments are refused with a useful message.
func TestPKICommandErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if out, err := runPKI(t, "init", dir, "--key-type", "ed25519"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"init"}, "accepts 1 arg"},
		{[]string{"init", dir + "-new", "--key-type", "dsa"}, "key type"},
		{[]string{"issue", "user", "--dir", dir, "--name", "Maria Silva"}, `required flag(s) "serial" not set`},
		{[]string{"issue", "device", "a/b", "--dir", dir}, "device name"},
		{[]string{"issue", "device", "x", "--dir", dir, "--days", "0"}, "--days 0"},
		{[]string{"issue", "device", "x", "--dir", filepath.Dir(dir)}, "pki init"},
		{[]string{"revoke", filepath.Join(dir, "server.crt")}, "certificate not issued by this PKI"},
		{[]string{"revoke", filepath.Join(dir, "device-ca.crt"), "--reason", "removeFromCRL"}, "unknown revocation reason"},
		{[]string{"revoke", filepath.Join(dir, "device-ca.crt"), "--next-update", "soon"}, "--next-update"},
		{[]string{"crl", "--dir", dir, "--ca", "root"}, "--ca: want device, user, content or all"},
		{[]string{"crl", "--dir", dir, "--next-update", "-1h"}, "positive"},
	} {
		out, err := runPKI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error saying %q\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFileT(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
