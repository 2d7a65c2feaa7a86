package main

import (
	"bufio"
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
	"time"
)

// proc is a child process started by startProc. Every child is stopped by
// its own PID (never by name) when it is no longer needed, and at the
// latest by stopAll when the benchmark exits; Pdeathsig kills it should
// the benchmark itself die.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logPath string
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]bool{}
)

// startProc runs bin with args and env added to ours; its stdout and
// stderr go to logDir/name.log.
func startProc(name, bin string, args, env []string, logDir string) (*proc, error) {
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	procsMu.Lock()
	procs[p] = true
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process's PID, SIGKILL after 5 s, and reaps it.
func (p *proc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	procsMu.Lock()
	delete(procs, p)
	procsMu.Unlock()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail is the end of the process's output, for error messages.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopAll stops every child still running (each by its PID).
func stopAll() {
	procsMu.Lock()
	var ps []*proc
	for p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		p.stop()
	}
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
// Someone else may take it before use, and Caddy binds with SO_REUSEPORT
// and would then share it silently: callers check afterwards with
// verifyListener (and, for Caddy, an identity token).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// verifyListener checks through /proc that every socket listening on TCP
// port belongs to pid, and that there is one.
func verifyListener(pid, port int) error {
	listening := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan()
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			if p, err := strconv.ParseInt(fields[1][i+1:], 16, 32); err == nil && int(p) == port {
				listening[fields[9]] = true
			}
		}
		f.Close()
	}
	if len(listening) == 0 {
		return fmt.Errorf("nothing listens on port %d", port)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	own := map[string]bool{}
	for _, e := range ents {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			if s, ok := strings.CutPrefix(link, "socket:["); ok {
				own[strings.TrimSuffix(s, "]")] = true
			}
		}
	}
	for ino := range listening {
		if !own[ino] {
			return fmt.Errorf("port %d: listening socket %s is not pid %d's (shared port?)", port, ino, pid)
		}
	}
	return nil
}

// waitHTTP polls url until any HTTP answer arrives, giving up early when p
// exits.
func waitHTTP(p *proc, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before %s answered:\n%s", p.name, url, p.logTail(15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s within %v: %v", url, timeout, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}()

// cpuSeconds is utime+stime of a process, from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return float64(ut+st) / clkTck, nil
}

// rssBytes is VmRSS of a process, from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuMeter measures a process's CPU time over an interval.
type cpuMeter struct {
	pid   int
	start float64
	t0    time.Time
}

func startCPU(pid int) cpuMeter {
	s, _ := cpuSeconds(pid)
	return cpuMeter{pid: pid, start: s, t0: time.Now()}
}

// stop returns the CPU seconds used and the wall time since start.
func (m cpuMeter) stop() (cpu float64, wall time.Duration) {
	s, _ := cpuSeconds(m.pid)
	return s - m.start, time.Since(m.t0)
}

// rssSampler records the largest VmRSS of some processes until stopped.
type rssSampler struct {
	pids  []int
	max   []int64
	stopc chan struct{}
	done  chan struct{}
}

func sampleRSS(every time.Duration, pids ...int) *rssSampler {
	s := &rssSampler{pids: pids, max: make([]int64, len(pids)), stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for i, pid := range s.pids {
				if r, err := rssBytes(pid); err == nil && r > s.max[i] {
					s.max[i] = r
				}
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() []int64 {
	close(s.stopc)
	<-s.done
	return s.max
}
