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
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
// (through internal/tools/buildcaddy and xcaddy.json, as `make caddy`) and
// clientproxy into a temporary directory, and returns their paths keyed by
// the environment variables that can name prebuilt ones instead.
func buildBinaries() (map[string]string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drm-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		caddy, cp := filepath.Join(dir, "caddy"), filepath.Join(dir, "clientproxy")
		for _, args := range [][]string{
			{"run", "./internal/tools/buildcaddy", "-o", caddy},
			{"build", "-o", cp, "./cmd/clientproxy"},
		} {
			cmd := exec.Command("go", args...)
			cmd.Dir = ".."
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

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago. It
// can be taken by someone else before use, and servers that bind with
// SO_REUSEPORT (caddy) then share it silently instead of failing: callers
// must check afterwards that their own process answers (verifyListener,
// startCaddy's identity check).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("freePort: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("freePort: close: %v", err)
	}
	return port
}

// proc is the bookkeeping of a process started by startProcess.
type proc struct {
	name       string
	cmd        *exec.Cmd
	done       chan struct{} // closed when Wait returned
	waitErr    error
	stdoutPath string
	stderrPath string
}

var procs sync.Map // *exec.Cmd -> *proc

func procOf(cmd *exec.Cmd) *proc {
	p, _ := procs.Load(cmd)
	pp, _ := p.(*proc)
	return pp
}

// startProcess starts name with args; env entries ("K=V") are added to (and
// override) the test's own environment. Stdout and stderr go to files under
// t.TempDir(); their tails are written to t.Log when the test failed. In
// t.Cleanup the process is stopped by its PID (SIGTERM, then SIGKILL after 5
// s) and reaped. It also gets SIGKILL if the test binary dies (Pdeathsig).
func startProcess(t testing.TB, name string, args []string, env []string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Base(name)
	stdout, err := os.Create(filepath.Join(dir, base+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, base+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: base, cmd: cmd, done: make(chan struct{}),
		stdoutPath: stdout.Name(), stderrPath: stderr.Name()}
	procs.Store(cmd, p)
	go func() {
		p.waitErr = cmd.Wait()
		stdout.Close()
		stderr.Close()
		close(p.done)
	}()
	t.Logf("started %s (pid %d): %s", base, cmd.Process.Pid, strings.Join(args, " "))
	t.Cleanup(func() {
		stopProcess(t, cmd)
		procs.Delete(cmd)
		if t.Failed() {
			t.Logf("%s (pid %d) stdout tail:\n%s", base, cmd.Process.Pid, fileTail(p.stdoutPath, 4096))
			t.Logf("%s (pid %d) stderr tail:\n%s", base, cmd.Process.Pid, fileTail(p.stderrPath, 4096))
		}
	})
	return cmd
}

// stopProcess stops a process started by startProcess (idempotent): SIGTERM
// to its PID, SIGKILL after 5 s, then waits for it to be reaped.
func stopProcess(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	p := procOf(cmd)
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Logf("%s (pid %d) ignored SIGTERM for 5 s; killing", p.name, cmd.Process.Pid)
		_ = cmd.Process.Kill()
		<-p.done
	}
}

// exited reports whether the process ended, and how.
func exited(cmd *exec.Cmd) (bool, error) {
	p := procOf(cmd)
	if p == nil {
		return true, errors.New("unknown process")
	}
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// processLogs returns the current stdout and stderr of a started process.
func processLogs(cmd *exec.Cmd) (stdout, stderr string) {
	p := procOf(cmd)
	if p == nil {
		return "", ""
	}
	return fileTail(p.stdoutPath, 1<<20), fileTail(p.stderrPath, 1<<20)
}

func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	nr, _ := f.ReadAt(b, off)
	return string(b[:nr])
}

// waitHTTP polls url until any HTTP response arrives (any status), failing
// the test after timeout.
func waitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := pollHTTP(url, timeout, nil); err != nil {
		t.Fatal(err)
	}
}

// waitHTTPProc is waitHTTP that gives up at once when cmd exits.
func waitHTTPProc(t testing.TB, cmd *exec.Cmd, url string, timeout time.Duration) {
	t.Helper()
	var done <-chan struct{}
	if p := procOf(cmd); p != nil {
		done = p.done
	}
	if err := pollHTTP(url, timeout, done); err != nil {
		_, stderr := processLogs(cmd)
		t.Fatalf("%v\nprocess stderr:\n%s", err, lastLines(stderr, 20))
	}
}

func pollHTTP(url string, timeout time.Duration, done <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("no HTTP response from %s within %v: %v", url, timeout, lastErr)
		}
		select {
		case <-done:
			return fmt.Errorf("process exited before %s answered (last error: %v)", url, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// verifyListener checks, through /proc, that every socket listening on TCP
// port belongs to process pid, and that there is at least one. It guards
// against SO_REUSEPORT sharing a port with a stranger. Where /proc/net/tcp
// is missing it returns nil.
func verifyListener(pid, port int) error {
	inodes, err := listeningInodes(port)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if len(inodes) == 0 {
		return fmt.Errorf("nothing listens on port %d", port)
	}
	own, err := socketInodes(pid)
	if err != nil {
		return err
	}
	for ino := range inodes {
		if !own[ino] {
			return fmt.Errorf("port %d: listening socket inode %s does not belong to pid %d (shared port?)", port, ino, pid)
		}
	}
	return nil
}

// listeningInodes returns the socket inodes in state LISTEN on port.
func listeningInodes(port int) (map[string]bool, error) {
	out := map[string]bool{}
	found := false
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		found = true
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			p, err := strconv.ParseInt(fields[1][i+1:], 16, 32)
			if err != nil || int(p) != port {
				continue
			}
			out[fields[9]] = true
		}
		f.Close()
	}
	if !found {
		return nil, os.ErrNotExist
	}
	return out, nil
}

func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(s, "]")] = true
		}
	}
	return out, nil
}

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
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timeout %v)", ctx.Err(), timeout)
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return stdout.Bytes(), nil
}
