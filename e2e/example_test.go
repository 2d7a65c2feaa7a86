package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestCaddyfileExampleRuns runs Caddyfile.example as it is, from a
// directory laid out as `make demo` leaves the repository (demo/pki with
// a device and a user, demo/media), and plays a track from it through
// clientproxy with those credentials.
func TestCaddyfileExampleRuns(t *testing.T) {
	requireE2E(t)
	caddyBin, cpBin := caddyBinary(t), clientProxyBinary(t)
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile.example"), example, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "demo", "media"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(devPKI(t, caddyBin), filepath.Join(dir, "demo", "pki")); err != nil {
		t.Fatal(err)
	}
	media := makeMedia(t, filepath.Join(dir, "demo", "media"))
	// The listener's credentials, as the example's comment says to make them.
	pki := filepath.Join(dir, "demo", "pki")
	pkiCLI(t, caddyBin, pki, "issue", "device", "demo-laptop")
	pkiCLI(t, caddyBin, pki, "issue", "user", "--serial", "BI12345678", "--name", "Demo Listener")
	pkiCLI(t, caddyBin, pki, "issue", "publisher", "demo-label")
	secrets := filepath.Join(dir, "demo", "secrets")
	os.MkdirAll(secrets, 0o700)
	pass := filepath.Join(secrets, "passphrase")
	if err := os.WriteFile(pass, []byte("example passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"keys", "new", filepath.Join(secrets, "at-rest.keys"), "--passphrase-file", pass},
		{"seal", filepath.Join(dir, "demo", "media"), filepath.Join(dir, "demo", "sealed"), "--keys", filepath.Join(secrets, "at-rest.keys"),
			"--passphrase-file", pass, "--dir", pki, "--publisher", "demo-label"},
	} {
		if out, err := exec.Command(caddyBin, append([]string{"drm"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("caddy drm %s: %v\n%s", args[0], err, out)
		}
	}

	port := freePort(t)
	// exec keeps the PID caddy's own, so the harness stops the right process.
	p := startProcess(t, "sh", []string{"-c", fmt.Sprintf("cd %q && exec %q run --config Caddyfile.example", dir, caddyBin)},
		append(isolatedEnv(t), "DRM_DEMO_PORT="+strconv.Itoa(port)))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTPProc(t, p, base+"/", 15*time.Second)
	if err := verifyListener(p.Pid(), port); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/tone.flac")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("raw media through the example: %s", resp.Status)
	}
	cp := startClientProxy(t, cpBin, base+"/drm", filepath.Join(pki, "root.crt"),
		"--device-cert", filepath.Join(pki, "device-demo-laptop.crt"), "--device-key", filepath.Join(pki, "device-demo-laptop.key"),
		"--user-cert", filepath.Join(pki, "user-BI12345678.crt"), "--user-key", filepath.Join(pki, "user-BI12345678.key"),
		"--content-ca", filepath.Join(pki, "content-ca.crt"))
	m := mediaByID(t, media, "tone.opus")
	comparePCM(t, mpvPCM(t, cp.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
}
