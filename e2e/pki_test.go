package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPKICommands: the real `caddy drm pki` commands, judged by openssl.
// A device certificate from `issue device` verifies for TLS clients with
// the device CA's CRL; two `revoke`s run at once are both recorded; after
// `crl` the full CRL, whose signature openssl checks, revokes the device.
func TestPKICommands(t *testing.T) {
	requireE2E(t, "openssl")
	caddy := caddyBinary(t)
	dir := devPKI(t, caddy)
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := runTool(context.Background(), time.Minute, name, args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	in := func(name string) string { return filepath.Join(dir, name) }
	verify := []string{"verify", "-purpose", "sslclient", "-crl_check", "-CAfile", in("device-ca.crt"), "-CRLfile", in("device-ca.crl")}

	for _, name := range []string{"tv", "phone"} {
		out := run(caddy, "drm", "pki", "issue", "device", name, "--dir", dir)
		if !strings.Contains(out, "wrote "+in("device-"+name+".crt")) {
			t.Errorf("issue device %s printed %q", name, out)
		}
	}
	out := run(caddy, "drm", "pki", "issue", "user", "--dir", dir, "--serial", "BI12345678", "--name", "Maria Silva", "--country", "PT")
	if !strings.Contains(out, "wrote "+in("user-BI12345678.crt")) {
		t.Errorf("issue user printed %q", out)
	}
	if out := run("openssl", "x509", "-noout", "-subject", "-in", in("user-BI12345678.crt")); !strings.Contains(out, "serialNumber = BI12345678") {
		t.Errorf("user subject: %s", out)
	}
	if out := run("openssl", append(verify, in("device-tv.crt"))...); !strings.Contains(out, ": OK") {
		t.Errorf("before revocation: %s", out)
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, name := range []string{"tv", "phone"} {
		wg.Go(func() {
			_, errs[i] = runTool(context.Background(), time.Minute, caddy, "drm", "pki", "revoke", in("device-"+name+".crt"), "--reason", "keyCompromise")
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var db struct {
		Revoked []struct{ Reason string }
	}
	if err := json.Unmarshal(readFileE2E(t, in("device-ca.revoked.json")), &db); err != nil {
		t.Fatal(err)
	}
	if len(db.Revoked) != 2 {
		t.Errorf("two concurrent revokes recorded %d revocations", len(db.Revoked))
	}
	if out := run("openssl", "crl", "-noout", "-text", "-in", in("device-ca.delta.crl")); !strings.Contains(out, "Delta CRL Indicator: critical") {
		t.Errorf("delta CRL:\n%s", out)
	}

	run(caddy, "drm", "pki", "crl", "--dir", dir)
	for _, crl := range []string{"device-ca.crl", "device-ca.delta.crl"} {
		if out, err := runTool(context.Background(), time.Minute, "openssl", "crl", "-noout", "-in", in(crl), "-CAfile", in("device-ca.crt")); err != nil {
			t.Errorf("openssl crl %s: %v\n%s", crl, err, out)
		}
	}
	out2, err := runTool(context.Background(), time.Minute, "openssl", append(verify, in("device-tv.crt"))...)
	if err == nil || !strings.Contains(string(out2)+err.Error(), "certificate revoked") {
		t.Errorf("after revoke and crl: %v\n%s", err, out2)
	}
}

func readFileE2E(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
