// Package e2e holds the end-to-end tests: real processes (caddy, clientproxy)
// on loopback ports, media made with ffmpeg, and mpv as the player. What the
// player hears is compared, bit for bit, with ffmpeg's decode of the original
// file. See README.md in this directory for the methodology and its findings.
//
// Everything here is skipped under -short. Tools come from scripts/deps.sh.
//
// Environment:
//
//	DRM_CADDY_BIN        caddy binary (default: built from this checkout)
//	DRM_CLIENTPROXY_BIN  clientproxy binary (for the protocol tests)
//	DRM_E2E_STRICT=1     a missing tool or binary fails instead of skipping
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// requireE2E skips under -short and when a needed tool is missing (fails
// instead when DRM_E2E_STRICT=1).
func requireE2E(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped under -short")
	}
	if len(tools) == 0 {
		tools = []string{"mpv", "ffmpeg", "ffprobe"}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not found on PATH (run scripts/deps.sh)", tool)
		}
	}
}

// skipOrFail skips, or fails when DRM_E2E_STRICT=1 (CI wants to know).
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("DRM_E2E_STRICT") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// binaryFromEnv returns the executable named by env; when env is unset it
// builds the repository's binaries once (see buildBinaries).
func binaryFromEnv(t testing.TB, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		bins, err := buildBinaries()
		if err != nil {
			t.Fatalf("building the binaries: %v", err)
		}
		return bins[env]
	}
	st, err := os.Stat(p)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		skipOrFail(t, "%s=%q is not an executable file (%v)", env, p, err)
	}
	return p
}

var (
	buildOnce sync.Once
	builtBins map[string]string
	buildErr  error
)

// buildBinaries builds, once per test binary, Caddy with the drm module
// (through internal/tools/buildcaddy, run in the tools module, and
// xcaddy.json, as `make caddy`) and clientproxy into a temporary directory,
// and returns their paths keyed by the environment variables that can name
// prebuilt ones instead.
func buildBinaries() (map[string]string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drm-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		caddy, cp := filepath.Join(dir, "caddy"), filepath.Join(dir, "clientproxy")
		root, err := filepath.Abs("..")
		if err != nil {
			buildErr = err
			return
		}
		for _, b := range []struct {
			dir  string
			args []string
		}{
			// buildcaddy lives in the tools module (internal/tools/go.mod).
			{filepath.Join(root, "internal", "tools"), []string{"run", "./buildcaddy",
				"-config", filepath.Join(root, "xcaddy.json"), "-local", root, "-o", caddy}},
			{root, []string{"build", "-o", cp, "./cmd/clientproxy"}},
		} {
			args := b.args
			cmd := exec.Command("go", args...)
			cmd.Dir = b.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 20))
				return
			}
		}
		builtBins = map[string]string{"DRM_CADDY_BIN": caddy, "DRM_CLIENTPROXY_BIN": cp}
	})
	return builtBins, buildErr
}

// caddyBinary is the caddy under test: $DRM_CADDY_BIN, or Caddy with the
// drm module built from this checkout.
func caddyBinary(t testing.TB) string {
	t.Helper()
	return binaryFromEnv(t, "DRM_CADDY_BIN")
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago
// (proc.FreePort). It can be taken by someone else before use, and servers
// that bind with SO_REUSEPORT (caddy) then share it silently instead of
// failing: check afterwards that your own process answers (verifyListener;
// startCaddy and startClientProxy do).
func freePort(t testing.TB) int {
	t.Helper()
	port, err := proc.FreePort()
	if err != nil {
		t.Fatalf("freePort: %v", err)
	}
	return port
}

// startProcess starts name with args; env entries ("K=V") are added to (and
// override) the test's own environment (proc.Start). Stdout and stderr go
// to files under t.TempDir(). It also gets SIGKILL if the test binary dies
// (Pdeathsig). See watchProcess for the cleanup.
func startProcess(t testing.TB, name string, args []string, env []string) *proc.Process {
	t.Helper()
	p, err := proc.Start(proc.Spec{Path: name, Args: args, Env: env, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s (pid %d): %s", p.Name(), p.Pid(), strings.Join(args, " "))
	watchProcess(t, p)
	return p
}

// watchProcess stops p in t.Cleanup (stopProcess) and then, when the test
// failed, logs the tails of its stdout and stderr.
func watchProcess(t testing.TB, p *proc.Process) {
	t.Cleanup(func() {
		stopProcess(t, p)
		if t.Failed() {
			stdout, stderr := processLogs(p)
			t.Logf("%s (pid %d) stdout tail:\n%s", p.Name(), p.Pid(), tail(stdout, 4096))
			t.Logf("%s (pid %d) stderr tail:\n%s", p.Name(), p.Pid(), tail(stderr, 4096))
		}
	})
}

func tail(s string, n int) string { return s[max(len(s)-n, 0):] }

// stopProcess stops a process (idempotent): SIGTERM to its PID, SIGKILL
// after 5 s, then waits for it to be reaped.
func stopProcess(t testing.TB, p *proc.Process) {
	t.Helper()
	if p.Stop() {
		t.Logf("%s (pid %d) ignored SIGTERM for %v; killed", p.Name(), p.Pid(), proc.DefaultKillAfter)
	}
}

// processLogs returns what a started process wrote so far to stdout and
// stderr (the last MiB of each).
func processLogs(p *proc.Process) (stdout, stderr string) { return p.Logs() }

// waitHTTP polls url until any HTTP response arrives (any status), failing
// the test after timeout.
func waitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := proc.WaitHTTP(url, timeout); err != nil {
		t.Fatal(err)
	}
}

// waitHTTPProc is waitHTTP that gives up at once when p exits.
func waitHTTPProc(t testing.TB, p *proc.Process, url string, timeout time.Duration) {
	t.Helper()
	if err := p.WaitHTTP(url, timeout); err != nil {
		t.Fatalf("%v\nprocess output:\n%s", err, p.Tail(20))
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string { return proc.LastLines(s, n) }

// verifyListener checks, through /proc, that every socket listening on TCP
// port belongs to process pid, and that there is at least one
// (proc.VerifyListener). It guards against SO_REUSEPORT sharing a port
// with a stranger.
func verifyListener(pid, port int) error { return proc.VerifyListener(pid, port) }

// isolatedEnv returns HOME, XDG_DATA_HOME, XDG_CONFIG_HOME and XDG_CACHE_HOME
// pointing into a fresh temp dir, so no state leaks in or out of a process.
func isolatedEnv(t testing.TB) []string {
	t.Helper()
	home := t.TempDir()
	for _, d := range []string{"data", "config", "cache"} {
		if err := os.Mkdir(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		"HOME=" + home,
		"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, "cache"),
	}
}

// runTool runs a short-lived tool with a timeout and returns its stdout;
// stderr ends up in the error.
func runTool(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.Stdin = nil
	proc.SetDeathSignal(cmd)
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timeout %v)", ctx.Err(), timeout)
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return stdout.Bytes(), nil
}
