package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// children are the processes the benchmark starts (Caddy, clientproxy):
// each is stopped by its own PID (never by name) when it is no longer
// needed, and at the latest by stopAll when a scenario ends or the
// benchmark exits; Pdeathsig kills it should the benchmark itself die.
var children proc.Group

// stopAll stops every child still running (each by its PID).
func stopAll() { children.StopAll() }

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
