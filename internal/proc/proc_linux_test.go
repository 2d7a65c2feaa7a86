//go:build linux

package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the child processes: with PROC_TEST_HELPER
// set it plays that part instead of running the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("PROC_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "exit": // writes to both outputs, exits with status 3
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "to stderr")
		os.Exit(3)
	case "sleep": // until a signal ends it
		time.Sleep(time.Hour)
	case "ignore-term": // survives SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "serve": // HTTP on PROC_TEST_ADDR, or the address in its first argument
		addr := os.Getenv("PROC_TEST_ADDR")
		if len(os.Args) > 1 {
			addr = os.Args[1]
		}
		l, err := reusePortListen(addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "helper") }))
	case "caddy":
		fakeCaddy()
	default:
		fmt.Fprintln(os.Stderr, "unknown PROC_TEST_HELPER")
		os.Exit(2)
	}
	os.Exit(1)
}

// fakeCaddy understands `run --config FILE --adapter caddyfile` where FILE
// holds "listen PORT" lines and identity sites as IdentitySite writes them;
// it binds every port with SO_REUSEPORT, as Caddy does, and answers the
// identity host with its token, anything else with 404.
func fakeCaddy() {
	if len(os.Args) != 6 || os.Args[1] != "run" || os.Args[2] != "--config" || os.Args[4] != "--adapter" {
		fmt.Fprintln(os.Stderr, "fake caddy: bad arguments", os.Args)
		os.Exit(2)
	}
	cfg, err := os.ReadFile(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tokens := map[string]string{} // port -> token
	ports := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^listen (\d+)$`).FindAllStringSubmatch(string(cfg), -1) {
		ports[m[1]] = true
	}
	site := regexp.MustCompile(`(?m)^http://([^:\s]+):(\d+) \{\n\trespond "([^"]*)" 200\n\}`)
	for _, m := range site.FindAllStringSubmatch(string(cfg), -1) {
		ports[m[2]] = true
		tokens[m[2]] = m[1] + " " + m[3]
	}
	for port := range ports {
		l, err := reusePortListen("127.0.0.1:" + port)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, token, _ := strings.Cut(tokens[port], " ")
			if token == "" || r.Host != host {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, token)
		}))
	}
	fmt.Fprintln(os.Stderr, "fake caddy serving", len(ports), "ports")
	time.Sleep(time.Hour)
}

func reusePortListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// helper is a Spec that runs the test binary as the helper named mode.
func helper(t *testing.T, mode string, env ...string) Spec {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Name: mode, Path: self, Env: append([]string{"PROC_TEST_HELPER=" + mode}, env...), LogDir: t.TempDir()}
}

func start(t *testing.T, g *Group, s Spec) *Process {
	t.Helper()
	p, err := g.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

func gone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Fatalf("FreePorts(8) = %v: not 8 distinct ports", ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d from FreePorts is not free: %v", p, err)
		}
		l.Close()
	}
	if p, err := FreePort(); err != nil || p <= 0 {
		t.Fatalf("FreePort() = %d, %v", p, err)
	}
}

func TestStartLogsAndExitStatus(t *testing.T) {
	s := helper(t, "exit")
	p := start(t, nil, s)
	err := p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait() = %v, want exit status 3", err)
	}
	if exited, werr := p.Exited(); !exited || werr != err {
		t.Fatalf("Exited() = %v, %v after Wait", exited, werr)
	}
	stdout, stderr := p.Logs()
	if stdout != "to stdout\n" || stderr != "to stderr\n" {
		t.Fatalf("Logs() = %q, %q", stdout, stderr)
	}
	if p.StdoutPath() != filepath.Join(s.LogDir, "exit.stdout") || p.StderrPath() != filepath.Join(s.LogDir, "exit.stderr") {
		t.Fatalf("output files %s, %s", p.StdoutPath(), p.StderrPath())
	}
	if tail := p.Tail(5); !strings.Contains(tail, "to stdout") || !strings.Contains(tail, "to stderr") {
		t.Fatalf("Tail(5) = %q", tail)
	}
	// A second process of the same name in the same directory gets files
	// of its own.
	p2 := start(t, nil, s)
	p2.Wait()
	if p2.StdoutPath() != filepath.Join(s.LogDir, "exit-2.stdout") {
		t.Fatalf("second process writes to %s", p2.StdoutPath())
	}
	if p.Stop() || p2.Stop() {
		t.Fatal("Stop of an exited process reported a kill")
	}
}

func TestStartMissingExecutable(t *testing.T) {
	_, err := Start(Spec{Path: filepath.Join(t.TempDir(), "nonexistent"), LogDir: t.TempDir()})
	if err == nil {
		t.Fatal("starting a missing executable: no error")
	}
	if _, err := Start(Spec{Path: "true"}); err == nil {
		t.Fatal("Start without LogDir: no error")
	}
}

func TestStopTerminatesAndReaps(t *testing.T) {
	p := start(t, nil, helper(t, "sleep"))
	pid := p.Pid()
	if exited, _ := p.Exited(); exited {
		t.Fatal("sleeping helper exited at once")
	}
	if p.Stop() {
		t.Fatal("Stop needed SIGKILL for a process that dies of SIGTERM")
	}
	exited, err := p.Exited()
	var ee *exec.ExitError
	if !exited || !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("after Stop: Exited() = %v, %v; want SIGTERM", exited, err)
	}
	if !gone(pid) {
		t.Fatalf("pid %d still in /proc after Stop (not reaped?)", pid)
	}
}

func TestKillIsSIGKILL(t *testing.T) {
	p := start(t, nil, helper(t, "ignore-term"))
	waitFor(t, "helper ready", 30*time.Second, func() bool {
		out, _ := p.Logs()
		return strings.Contains(out, "ready")
	})
	p.Kill()
	_, err := p.Exited()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit: %v, want SIGKILL", err)
	}
	if !gone(p.Pid()) {
		t.Fatalf("pid %d still in /proc after Kill (not reaped?)", p.Pid())
	}
	p.Kill() // a second Kill of a reaped process returns at once
}

func TestStopKillsAfterGracePeriod(t *testing.T) {
	s := helper(t, "ignore-term")
	s.KillAfter = 200 * time.Millisecond
	p := start(t, nil, s)
	// SIGTERM is ignored only once the helper said so.
	waitFor(t, "helper ready", 30*time.Second, func() bool {
		out, _ := p.Logs()
		return strings.Contains(out, "ready")
	})
	t0 := time.Now()
	if !p.Stop() {
		t.Fatal("Stop did not report a SIGKILL for a process ignoring SIGTERM")
	}
	if d := time.Since(t0); d < s.KillAfter {
		t.Fatalf("killed after %v, before the grace period %v", d, s.KillAfter)
	}
	_, err := p.Exited()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit: %v, want SIGKILL", err)
	}
	if !gone(p.Pid()) {
		t.Fatalf("pid %d still in /proc after Stop", p.Pid())
	}
}

func TestGroupStopAll(t *testing.T) {
	var g Group
	a, b := start(t, &g, helper(t, "sleep")), start(t, &g, helper(t, "sleep"))
	quick := start(t, &g, helper(t, "exit"))
	quick.Wait()
	if got := len(g.Processes()); got != 2 {
		t.Fatalf("group has %d processes, want the 2 running ones", got)
	}
	g.StopAll()
	for _, p := range []*Process{a, b} {
		if exited, _ := p.Exited(); !exited {
			t.Fatalf("pid %d still running after StopAll", p.Pid())
		}
	}
	if got := len(g.Processes()); got != 0 {
		t.Fatalf("group has %d processes after StopAll", got)
	}
	var nilGroup *Group
	nilGroup.StopAll() // no-op
}

func TestWaitHTTP(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	p := start(t, nil, helper(t, "serve", fmt.Sprintf("PROC_TEST_ADDR=127.0.0.1:%d", port)))
	if err := p.WaitHTTP(url, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := WaitHTTP(url, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWaitHTTPTimeout(t *testing.T) {
	port, err := FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	err = WaitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", port), 200*time.Millisecond)
	if err == nil || errors.Is(err, ErrExited) {
		t.Fatalf("WaitHTTP of a closed port = %v, want a timeout", err)
	}
}

func TestWaitHTTPGivesUpWhenProcessExits(t *testing.T) {
	port, err := FreePort() // the helper never listens there
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, helper(t, "sleep"))
	const timeout = time.Minute
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() { errc <- p.WaitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", port), timeout) }()
	p.Stop() // before or during the wait: either way it must give up
	select {
	case err := <-errc:
		if !errors.Is(err, ErrExited) {
			t.Fatalf("WaitHTTP = %v, want ErrExited", err)
		}
		if d := time.Since(t0); d > timeout/2 {
			t.Fatalf("WaitHTTP gave up after %v", d)
		}
	case <-time.After(timeout / 2):
		t.Fatal("WaitHTTP still waiting after the process exited")
	}

	// A process that exits by itself, with its status in the error.
	q := start(t, nil, helper(t, "exit"))
	err = q.WaitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", port), timeout)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("WaitHTTP = %v, want ErrExited with exit status 3", err)
	}
}

func TestVerifyListener(t *testing.T) {
	// A listener of this process.
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	ownPort := own.Addr().(*net.TCPAddr).Port
	if err := VerifyListener(os.Getpid(), ownPort); err != nil {
		t.Errorf("own listener: %v", err)
	}

	// A listener of another process (a child of ours).
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	child := start(t, nil, helper(t, "serve", fmt.Sprintf("PROC_TEST_ADDR=127.0.0.1:%d", port)))
	if err := child.WaitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", port), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := VerifyListener(child.Pid(), port); err != nil {
		t.Errorf("child's listener, asked for the child: %v", err)
	}
	if err := VerifyListener(os.Getpid(), port); !errors.Is(err, ErrForeignListener) {
		t.Errorf("child's listener, asked for us: %v, want ErrForeignListener", err)
	}
	if err := VerifyListener(child.Pid(), ownPort); !errors.Is(err, ErrForeignListener) {
		t.Errorf("our listener, asked for the child: %v, want ErrForeignListener", err)
	}

	// Both on one port (SO_REUSEPORT): neither owns it alone.
	shared, err := reusePortListen(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if err := VerifyListener(child.Pid(), port); !errors.Is(err, ErrForeignListener) {
		t.Errorf("shared port, asked for the child: %v, want ErrForeignListener", err)
	}

	// Nothing at all.
	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyListener(os.Getpid(), free); !errors.Is(err, ErrNoListener) {
		t.Errorf("free port: %v, want ErrNoListener", err)
	}
}

// fakeCaddySpec is a CaddySpec for the fake caddy with two ports: an
// identity site on the first, a plain listener on the second; render may
// change the attempt's Caddyfile.
func fakeCaddySpec(t *testing.T, logs *[]string, render func(a CaddyAttempt) CaddyAttempt) CaddySpec {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	return CaddySpec{
		Bin: self, Env: []string{"PROC_TEST_HELPER=caddy"}, Dir: t.TempDir(), Ports: 2,
		ReadyTimeout: 30 * time.Second,
		Render: func(a CaddyAttempt) (string, []int, error) {
			if render != nil {
				a = render(a)
			}
			return a.IdentitySite(a.Ports[0]) + fmt.Sprintf("listen %d\n", a.Ports[1]), a.Ports[:1], nil
		},
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			*logs = append(*logs, fmt.Sprintf(format, args...))
		},
	}
}

func TestStartCaddy(t *testing.T) {
	var logs []string
	var g Group
	c, err := g.StartCaddy(fakeCaddySpec(t, &logs, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.N != 1 || len(logs) != 0 {
		t.Fatalf("attempt %d, logs %q; want the first to succeed", c.N, logs)
	}
	if len(c.Ports) != 2 || c.Ports[0] == c.Ports[1] || len(c.IdentityPorts) != 1 || c.IdentityPorts[0] != c.Ports[0] {
		t.Fatalf("ports %v, identity ports %v", c.Ports, c.IdentityPorts)
	}
	if c.IdentityHost != DefaultIdentityHost || len(c.Token) != 32 {
		t.Fatalf("identity %q token %q", c.IdentityHost, c.Token)
	}
	cfg, err := os.ReadFile(c.Caddyfile)
	if err != nil || !strings.Contains(string(cfg), CaddyQuote(c.Token)) || filepath.Dir(c.Caddyfile) != c.Dir {
		t.Fatalf("Caddyfile %s in %s: %q, %v", c.Caddyfile, c.Dir, cfg, err)
	}
	for _, port := range c.Ports {
		if err := VerifyListener(c.Pid(), port); err != nil {
			t.Error(err)
		}
	}
	if ps := g.Processes(); len(ps) != 1 || ps[0] != c.Process {
		t.Fatalf("group holds %v", ps)
	}
}

func TestStartCaddyRetriesOnIdentityMismatch(t *testing.T) {
	var logs []string
	var g Group
	wrongFirst := func(a CaddyAttempt) CaddyAttempt {
		if a.N == 1 {
			a.Token = "not-" + a.Token // caddy answers another token
		}
		return a
	}
	c, err := g.StartCaddy(fakeCaddySpec(t, &logs, wrongFirst))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.N != 2 || len(logs) != 1 || !strings.Contains(logs[0], "attempt 1 of 3") || !strings.Contains(logs[0], ErrIdentity.Error()) {
		t.Fatalf("attempt %d, logs %q; want attempt 1 to fail the identity check", c.N, logs)
	}
	if ps := g.Processes(); len(ps) != 1 || ps[0] != c.Process {
		t.Fatalf("group holds %d processes: the failed attempt's caddy was not stopped", len(ps))
	}

	// With one attempt only, the mismatch is the error.
	logs = nil
	s := fakeCaddySpec(t, &logs, func(a CaddyAttempt) CaddyAttempt { a.Token = "wrong"; return a })
	s.Attempts = 1
	if _, err := g.StartCaddy(s); !errors.Is(err, ErrIdentity) {
		t.Fatalf("StartCaddy with a wrong token = %v, want ErrIdentity", err)
	}
	if ps := g.Processes(); len(ps) != 1 {
		t.Fatalf("group holds %d processes after a failed start, want 1", len(ps))
	}
}

func TestStartCaddyRetriesOnSharedPort(t *testing.T) {
	// On attempt 1 a stranger (this process) shares the identity port with
	// SO_REUSEPORT and even knows the token: only the /proc check can
	// tell.
	var stranger net.Listener
	var logs []string
	share := func(a CaddyAttempt) CaddyAttempt {
		if a.N != 1 {
			return a
		}
		l, err := reusePortListen(fmt.Sprintf("127.0.0.1:%d", a.Ports[0]))
		if err != nil {
			t.Error(err)
			return a
		}
		stranger = l
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, a.Token) }))
		return a
	}
	c, err := StartCaddy(fakeCaddySpec(t, &logs, share))
	if stranger != nil {
		defer stranger.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.N != 2 || len(logs) != 1 || !strings.Contains(logs[0], ErrForeignListener.Error()) {
		t.Fatalf("attempt %d, logs %q; want attempt 1 to fail the listener check", c.N, logs)
	}
}

func TestStartCaddyDoesNotRetryARenderError(t *testing.T) {
	calls := 0
	_, err := StartCaddy(CaddySpec{Bin: "caddy", Dir: t.TempDir(), Render: func(CaddyAttempt) (string, []int, error) {
		calls++
		return "", nil, errors.New("bad template")
	}})
	if err == nil || !strings.Contains(err.Error(), "bad template") || calls != 1 {
		t.Fatalf("StartCaddy = %v after %d renders; want the render error after 1", err, calls)
	}
}

func TestStartServerGivesUpOnAnExitingServer(t *testing.T) {
	var logs []string
	s := fakeCaddySpec(t, &logs, nil)
	s.Env = []string{"PROC_TEST_HELPER=exit"}
	s.Attempts = 2
	_, err := StartCaddy(s)
	if !errors.Is(err, ErrExited) || len(logs) != 2 || !strings.Contains(err.Error(), "to stderr") {
		t.Fatalf("StartCaddy of a process that exits = %v (logs %q); want ErrExited with its output after 2 attempts", err, logs)
	}
}

func TestStartServer(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	checks := 0
	srv, err := StartServer(ServerSpec{
		Name: "web", Path: self, Env: []string{"PROC_TEST_HELPER=serve"}, Dir: t.TempDir(),
		ReadyTimeout: 30 * time.Second,
		Args:         func(a Attempt) ([]string, error) { return []string{fmt.Sprintf("127.0.0.1:%d", a.Ports[0])}, nil },
		Check: func(s *Server) error {
			checks++
			if s.N == 1 {
				return errors.New("first attempt refused")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if srv.N != 2 || checks != 2 || len(srv.Ports) != 1 || srv.Name() != "web" {
		t.Fatalf("server %+v after %d checks", srv.Attempt, checks)
	}
	if filepath.Dir(srv.StdoutPath()) != srv.Dir {
		t.Fatalf("output in %s, attempt dir %s", srv.StdoutPath(), srv.Dir)
	}
	if err := WaitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", srv.Ports[0]), time.Second); err != nil {
		t.Fatal(err)
	}
}
