package e2e

// User keys on PKCS#11 tokens, with real binaries: a SoftHSM token shaped
// like a Portuguese Citizen Card (RSA, as cards until 2024, and ECDSA
// P-256 as cards since), clientproxy --pkcs11-module, mpv.

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/testpki"
	"github.com/caddy-drm/caddy-drm/keystore"
)

// newCardSetup makes a card and a Caddy that trusts its CAs (the card's
// root and sub-CA, with empty CRLs made by openssl).
func newCardSetup(t *testing.T, keyType string) (*credSetup, *testpki.Card, []string) {
	t.Helper()
	requireE2E(t, "mpv", "ffmpeg", "openssl", "softhsm2-util", "pkcs11-tool")
	dir := t.TempDir()
	// A PIN no log line or number could contain by chance.
	card, err := testpki.NewCard(dir, keyType, "BI98765432", "Joana Cartao", "pin-Zq7x-kW")
	if err != nil {
		t.Fatal(err)
	}
	rootCRL, subCRL := filepath.Join(dir, "root.crl"), filepath.Join(dir, "sub.crl")
	if err := card.Root.CRL(rootCRL, ""); err != nil {
		t.Fatal(err)
	}
	if err := card.SubCA.CRL(subCRL, ""); err != nil {
		t.Fatal(err)
	}
	// The server knows the root and the sub-CA (whose CRL it checks); the
	// card sends the sub-CA's certificate along anyway, as cards do.
	s := startCredentials(t, []string{card.Root.Cert, card.SubCA.Cert}, []string{rootCRL, subCRL})
	return s, card, []string{rootCRL, subCRL}
}

// tokenArgs are clientproxy's flags for the setup's device and the card.
func tokenArgs(s *credSetup, card *testpki.Card, pinFile string) []string {
	dev := s.files.Device("laptop")
	return []string{"--device-cert", dev.Cert, "--device-key", dev.Key, "--pkcs11-module", testpki.SoftHSMModule,
		"--pkcs11-token", card.Label, "--pkcs11-key-label", testpki.CardKeyLabel, "--pin-file", pinFile}
}

func writePIN(t *testing.T, pin string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(f, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCardPlays: with the card and its PIN, mpv plays, sample for sample;
// Caddy names the user by the card's serialNumber; the PIN is in no log
// and no process's command line.
func TestCardPlays(t *testing.T) {
	for _, keyType := range []string{"rsa:2048", "ec"} {
		t.Run(keyType, func(t *testing.T) {
			s, card, _ := newCardSetup(t, keyType)
			cp := startClientProxyEnv(t, card.Env(), clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert,
				tokenArgs(s, card, writePIN(t, card.PIN))...)
			comparePCM(t, mpvPCM(t, cp.MediaURL(s.media.ID), 0), ffmpegPCM(t, s.media.Path, 0))
			waitLog(t, s.caddy.Proc, `"user":"BI98765432"`, 1, 10*time.Second)
			cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cp.Proc.Pid()), "cmdline"))
			if err != nil {
				t.Fatal(err)
			}
			cpOut, cpErr := cp.Proc.Logs()
			caddyOut, caddyErr := s.caddy.Proc.Logs()
			for what, text := range map[string]string{"the command line": string(cmdline), "the logs": cpOut + cpErr + caddyOut + caddyErr} {
				if strings.Contains(text, card.PIN) {
					t.Errorf("the PIN is in %s", what)
				}
			}
		})
	}
}

// TestCardRefusals: a wrong PIN, a token not present, a module not
// installed each stop clientproxy at start with their own message; a card
// whose certificate was revoked plays nothing, and the player is told so.
func TestCardRefusals(t *testing.T) {
	s, card, crls := newCardSetup(t, "ec")
	for _, c := range []struct {
		name string
		edit func([]string) []string
		want string
	}{
		{"wrong PIN", func(a []string) []string { return replaceFlag(a, "--pin-file", writePIN(t, "0000")) }, "wrong PIN for token"},
		{"token not present", func(a []string) []string { return replaceFlag(a, "--pkcs11-token", "YUBIKEY") }, `no token labelled "YUBIKEY"`},
		{"module not installed", func(a []string) []string {
			return replaceFlag(a, "--pkcs11-module", "/usr/local/lib/libpteidpkcs11.so")
		}, "cannot load the PKCS#11 module"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--server", s.caddy.URL("drm"), "--root-ca", s.files.RootCert, "--listen", "127.0.0.1:0"},
				c.edit(tokenArgs(s, card, writePIN(t, card.PIN)))...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, clientProxyBinary(t), args...)
			cmd.Env = append(append(isolatedEnv(t), card.Env()...), "PATH="+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("clientproxy did not stop at start (err %v)", err)
			}
			if !strings.Contains(string(out), c.want) || strings.Contains(string(out), card.PIN) {
				t.Fatalf("clientproxy said %q, want %q (and never the PIN)", out, c.want)
			}
		})
	}
	t.Run("revoked card", func(t *testing.T) {
		if err := card.SubCA.Revoke(card.Cert, "keyCompromise"); err != nil {
			t.Fatal(err)
		}
		if err := card.SubCA.CRL(crls[1], ""); err != nil { // Caddy reads it again within a second
			t.Fatal(err)
		}
		// Caddy looks at its CRL files when it checks a credential, at most
		// once a second: present the setup's own listener until it has read
		// the new CRL.
		dev, user := s.files.Device("laptop"), s.files.User("BI12345678")
		devCred, userCred := credential(t, "device", dev.Cert, dev.Key), credential(t, "user", user.Cert, user.Key)
		deadline := time.Now().Add(10 * time.Second)
		for countLog(s.caddy.Proc, "CRL file read again") == 0 {
			if status, de := s.present(t, devCred, userCred); status != http.StatusOK || time.Now().After(deadline) {
				t.Fatalf("waiting for Caddy to read the CRL again: %d %q", status, de)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cp := startClientProxyEnv(t, card.Env(), clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert,
			tokenArgs(s, card, writePIN(t, card.PIN))...)
		resp, err := http.Get(cp.MediaURL(s.media.ID))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "user credential: revoked") {
			t.Fatalf("a revoked card: %s %.200q", resp.Status, body)
		}
	})
}

func replaceFlag(args []string, flag, value string) []string {
	out := append([]string{}, args...)
	for i := range out {
		if out[i] == flag && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}

// TestClientproxyWithoutCgo: built without cgo, clientproxy still runs
// with software keys, and says why --pkcs11-module cannot work.
func TestClientproxyWithoutCgo(t *testing.T) {
	requireE2E(t)
	bin := filepath.Join(t.TempDir(), "clientproxy-nocgo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/clientproxy")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	pki, err := keystore.InitPKI(t.TempDir(), keystore.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--server", "http://127.0.0.1:1/drm", "--root-ca", pki.RootCert,
		"--pkcs11-module", testpki.SoftHSMModule, "--pin-file", "/dev/null").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "built without cgo") {
		t.Fatalf("a cgo-less clientproxy with --pkcs11-module: %v %q", err, out)
	}
}
