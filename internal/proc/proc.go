// Package proc runs the child processes of the end-to-end tests (e2e/) and
// of the benchmark (internal/tools/drmbench): it starts a process with its
// output in files, stops it by PID (SIGTERM, then SIGKILL) and reaps it,
// waits until a URL answers (giving up when the process exits), checks who
// listens on a port, and starts a server — Caddy in particular — on free
// loopback ports, retrying when a stranger turns out to share a port.
//
// Everything returns errors; nothing exits or fails a test. The e2e harness
// wraps it in t.Helper functions, the benchmark keeps its children in a
// Group and stops them all at the end.
//
// It is meant for Linux: a child gets SIGKILL when the thread that started
// it dies (Pdeathsig), and listening sockets are matched to processes
// through /proc. On other systems it compiles, without the death signal,
// and VerifyListener (so StartServer and StartCaddy) reports
// errors.ErrUnsupported.
package proc

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultKillAfter is how long Stop waits after SIGTERM before SIGKILL.
const DefaultKillAfter = 5 * time.Second

// ErrExited is wrapped by the errors of WaitHTTP when the process ended
// before the URL answered.
var ErrExited = errors.New("process exited")

// Spec describes a process to start.
type Spec struct {
	Name string   // in file names and messages; default: the base name of Path
	Path string   // the executable (looked up in PATH when it has no slash)
	Args []string // arguments, without the program name
	Env  []string // "K=V" entries added to (and overriding) this process's environment
	// LogDir gets the process's stdout and stderr, as NAME.stdout and
	// NAME.stderr (NAME-2.stdout, ... when taken). Required.
	LogDir    string
	KillAfter time.Duration // Stop's grace period; default DefaultKillAfter
}

// Process is a child started by Start. A goroutine waits for it, so it is
// reaped as soon as it exits.
type Process struct {
	name       string
	cmd        *exec.Cmd
	killAfter  time.Duration
	stdoutPath string
	stderrPath string
	done       chan struct{} // closed once Wait returned
	waitErr    error
}

// Group keeps track of the processes started through it, so that they can
// be stopped together (StopAll). A nil *Group keeps track of nothing; the
// zero Group is ready to use.
type Group struct {
	mu    sync.Mutex
	procs map[*Process]struct{}
}

// Start starts a process that belongs to no group.
func Start(s Spec) (*Process, error) { return (*Group)(nil).Start(s) }

// Start starts s.Path with its output in files under s.LogDir. The child
// gets SIGKILL should this process die (Linux). It is in g until it has
// exited and been reaped.
func (g *Group) Start(s Spec) (*Process, error) {
	if s.LogDir == "" {
		return nil, errors.New("proc: Spec.LogDir is empty")
	}
	name := s.Name
	if name == "" {
		name = filepath.Base(s.Path)
	}
	stdout, stderr, err := createLogs(s.LogDir, name)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// The child has its own copies of the descriptors.
	defer stdout.Close()
	defer stderr.Close()
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	SetDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, killAfter: s.KillAfter,
		stdoutPath: stdout.Name(), stderrPath: stderr.Name(), done: make(chan struct{})}
	if p.killAfter <= 0 {
		p.killAfter = DefaultKillAfter
	}
	g.add(p)
	go func() {
		p.waitErr = cmd.Wait()
		g.remove(p)
		close(p.done)
	}()
	return p, nil
}

// createLogs creates dir/NAME.stdout and dir/NAME.stderr, or NAME-2.*,
// NAME-3.*, ... when those exist.
func createLogs(dir, name string) (stdout, stderr *os.File, err error) {
	create := func(path string) (*os.File, error) {
		return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	for i := 1; i <= 10000; i++ {
		base := name
		if i > 1 {
			base = fmt.Sprintf("%s-%d", name, i)
		}
		stdout, err = create(filepath.Join(dir, base+".stdout"))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		stderr, err = create(filepath.Join(dir, base+".stderr"))
		if err != nil {
			stdout.Close()
			os.Remove(stdout.Name())
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return nil, nil, err
		}
		return stdout, stderr, nil
	}
	return nil, nil, fmt.Errorf("no free log file name for %s in %s", name, dir)
}

func (g *Group) add(p *Process) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.procs == nil {
		g.procs = map[*Process]struct{}{}
	}
	g.procs[p] = struct{}{}
}

func (g *Group) remove(p *Process) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.procs, p)
}

// Processes returns the processes of g that have not exited yet (or not
// been reaped).
func (g *Group) Processes() []*Process {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Process, 0, len(g.procs))
	for p := range g.procs {
		out = append(out, p)
	}
	return out
}

// StopAll stops every process of g (each by its PID, as Stop does), all at
// the same time, and returns when all are reaped.
func (g *Group) StopAll() {
	var wg sync.WaitGroup
	for _, p := range g.Processes() {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()
}

// Name is the process's name (Spec.Name).
func (p *Process) Name() string { return p.name }

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited (and been reaped), and
// with what result (nil for exit status 0, else an *exec.ExitError).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Wait waits for the process to exit and returns what Exited would.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Stop sends SIGTERM to the process's PID, SIGKILL after the grace period
// (Spec.KillAfter), and returns once it is reaped; killed reports whether
// SIGKILL was needed. It does nothing to a process that already exited, so
// it can be called more than once, also concurrently.
func (p *Process) Stop() (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(p.killAfter)
	defer timer.Stop()
	select {
	case <-p.done:
		return false
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

// Kill sends SIGKILL to the process's PID — a crash, as kill -9 makes one
// — and returns once it is reaped.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// StdoutPath and StderrPath are the files the process writes to.
func (p *Process) StdoutPath() string { return p.stdoutPath }
func (p *Process) StderrPath() string { return p.stderrPath }

// maxLog is how much of each output file Logs returns (the end of it).
const maxLog = 1 << 20

// Logs returns what the process wrote so far to stdout and stderr (the
// last MiB of each).
func (p *Process) Logs() (stdout, stderr string) {
	return fileTail(p.stdoutPath, maxLog), fileTail(p.stderrPath, maxLog)
}

// Tail returns the last n lines of the process's stderr, after the last n
// lines of its stdout when it wrote any there: for error messages.
func (p *Process) Tail(n int) string {
	stdout, stderr := p.Logs()
	if strings.TrimSpace(stdout) == "" {
		return LastLines(stderr, n)
	}
	return "stdout:\n" + LastLines(stdout, n) + "\nstderr:\n" + LastLines(stderr, n)
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

// LastLines returns the last n lines of s, without a final newline.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pollInterval is the pause between two tries of WaitHTTP.
const pollInterval = 50 * time.Millisecond

// WaitHTTP polls url until any HTTP response arrives (whatever its status)
// and returns an error after timeout.
func WaitHTTP(url string, timeout time.Duration) error { return waitHTTP(url, timeout, nil) }

// WaitHTTP is the package's WaitHTTP that gives up as soon as the process
// exits, with an error wrapping ErrExited.
func (p *Process) WaitHTTP(url string, timeout time.Duration) error {
	return waitHTTP(url, timeout, p)
}

func waitHTTP(url string, timeout time.Duration, p *Process) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	var done <-chan struct{}
	if p != nil {
		done = p.done
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if p != nil {
			if exited, werr := p.Exited(); exited {
				return fmt.Errorf("%s (pid %d) exited (%v) before %s answered (last error: %v): %w",
					p.name, p.Pid(), exitStatus(werr), url, err, ErrExited)
			}
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no HTTP answer from %s within %v: %v", url, timeout, err)
		}
		timer := time.NewTimer(pollInterval)
		select {
		case <-done:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
// Someone else can take it before it is used, and a server that binds with
// SO_REUSEPORT (Caddy) then shares it silently instead of failing: check
// afterwards who listens (VerifyListener; StartServer and StartCaddy do).
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago (see FreePort).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
