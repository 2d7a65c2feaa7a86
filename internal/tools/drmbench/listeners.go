package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// playRate is 320 kbit/s in bytes per second.
const playRate = 40000.0

// listener is what one simulated player saw.
type listener struct {
	underruns int
	stalled   time.Duration
	startup   time.Duration // request of the first chunk to its arrival
	fetches   int
	maxFetch  time.Duration
	errs      int
	firstErr  error
}

// play simulates one player: it fetches the first chunk, starts playing
// at 40,000 B/s, fetches the next chunk whenever its buffer falls below
// one chunk, and counts an underrun each time the buffer runs dry (the
// playback then stalls until the chunk arrives). It stops at end.
func play(fetch func(idx int64) (int, error), first, nChunks int64, cs int, ramp time.Duration, end time.Time) listener {
	var l listener
	time.Sleep(rand.N(ramp + 1))
	idx := first
	get := func() (int, bool) {
		for time.Now().Before(end.Add(30 * time.Second)) {
			t0 := time.Now()
			n, err := fetch(idx % nChunks)
			d := time.Since(t0)
			if err == nil {
				l.fetches++
				l.maxFetch = max(l.maxFetch, d)
				idx++
				return n, true
			}
			l.errs++
			if l.firstErr == nil {
				l.firstErr = err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return 0, false
	}
	t0 := time.Now()
	n, ok := get()
	if !ok {
		return l
	}
	l.startup = time.Since(t0)
	start := time.Now()
	received := float64(n)
	for {
		now := time.Now()
		if !now.Before(end) {
			return l
		}
		played := playRate * (now.Sub(start) - l.stalled).Seconds()
		if level := received - played; level >= float64(cs) {
			sleep := time.Duration((level-float64(cs))/playRate*float64(time.Second)) + time.Millisecond
			if now.Add(sleep).After(end) {
				return l
			}
			time.Sleep(sleep)
			continue
		}
		n, ok := get()
		if !ok {
			return l
		}
		arrived := time.Now()
		if playRate*(arrived.Sub(start)-l.stalled).Seconds() > received {
			dry := start.Add(l.stalled + time.Duration(received/playRate*float64(time.Second)))
			l.stalled += arrived.Sub(dry)
			l.underruns++
		}
		received += float64(n)
	}
}

// listenOutcome is one run of N listeners.
type listenOutcome struct {
	Underruns     int              `json:"underruns"`
	Stalled       float64          `json:"stalled_s"`
	WithUnderrun  int              `json:"listeners_with_underrun"`
	Errors        int              `json:"errors"`
	Fetches       int              `json:"fetches"`
	StartupP50    float64          `json:"startup_p50_ms"`
	StartupMax    float64          `json:"startup_max_ms"`
	MaxFetch      float64          `json:"max_fetch_ms"`
	CaddyCPU      float64          `json:"caddy_cpu_pct"`
	CaddyRSS      float64          `json:"caddy_rss_max_mib"`
	ClientCPU     float64          `json:"client_cpu_pct"`
	ClientRSS     float64          `json:"client_rss_max_mib"`
	SlowStarts    int              `json:"listeners_starting_after_1s"`
	TCP           map[string]int64 `json:"tcp_counter_deltas"`
	FirstErr      string           `json:"first_error,omitempty"`
	ChunkRequests float64          `json:"requests_per_s"`
}

// listenRun starts a fresh Caddy and runs n listeners for dur against it,
// protected (each its own clientproxy.Client, its own session and
// connection pool) or plain (each its own HTTPS connection, Range GETs of
// the same chunk size).
func (b *bench) listenRun(protected bool, n int) (listenOutcome, error) {
	var out listenOutcome
	cs := b.cfg.ListenChunk
	c, err := b.startCaddy("listeners", []site{staticSite("https", true),
		drmSite("l64", fmt.Sprintf("chunk_size %d", cs))})
	if err != nil {
		return out, err
	}
	defer c.Stop()
	runtime.GC()
	debug.FreeOSMemory()
	nChunks := b.cfg.FileSize / int64(cs)
	ramp := 2 * time.Second
	if b.cfg.Quick {
		ramp = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ListenDur+2*time.Minute)
	defer cancel()
	fetchers := make([]func(int64) (int, error), n)
	var closers []func()
	for i := range fetchers {
		if protected {
			cl, err := b.drmClient(c.url("l64", "drm"), nil, nil)
			if err != nil {
				return out, err
			}
			fetchers[i] = func(idx int64) (int, error) {
				d, err := cl.ReadChunk(ctx, b.bigID, idx)
				return len(d), err
			}
			continue
		}
		hc := h1Client(c.roots, 1)
		closers = append(closers, func() { closeIdle(hc) })
		fetchers[i] = func(idx int64) (int, error) {
			off := idx * int64(cs)
			n, err := getDiscard(ctx, hc, c.url("https", b.bigID), fmt.Sprintf("bytes=%d-%d", off, off+int64(cs)-1))
			return int(n), err
		}
	}
	tcp0 := tcpCounters()
	self := os.Getpid()
	rss := sampleRSS(250*time.Millisecond, c.Pid(), self)
	cm, sm := startCPU(c.Pid()), startCPU(self)
	end := time.Now().Add(b.cfg.ListenDur)
	ls := make([]listener, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls[i] = play(fetchers[i], rand.Int64N(nChunks), nChunks, cs, ramp, end)
		}()
	}
	wg.Wait()
	ccpu, wall := cm.stop()
	scpu, _ := sm.stop()
	maxRSS := rss.stop()
	out.TCP = map[string]int64{}
	for k, v := range tcpCounters() {
		if d := v - tcp0[k]; d != 0 {
			out.TCP[k] = d
		}
	}
	for _, f := range closers {
		f()
	}
	var startups []float64
	for _, l := range ls {
		out.Underruns += l.underruns
		out.Stalled += l.stalled.Seconds()
		if l.underruns > 0 {
			out.WithUnderrun++
		}
		out.Errors += l.errs
		out.Fetches += l.fetches
		if l.firstErr != nil && out.FirstErr == "" {
			out.FirstErr = l.firstErr.Error()
		}
		out.MaxFetch = max(out.MaxFetch, float64(l.maxFetch)/1e6)
		startups = append(startups, float64(l.startup)/1e6)
		if l.startup > time.Second {
			out.SlowStarts++
		}
	}
	slices.Sort(startups)
	out.StartupP50, out.StartupMax = startups[len(startups)/2], startups[len(startups)-1]
	out.CaddyCPU, out.ClientCPU = ccpu/wall.Seconds()*100, scpu/wall.Seconds()*100
	out.CaddyRSS, out.ClientRSS = float64(maxRSS[0])/(1<<20), float64(maxRSS[1])/(1<<20)
	out.ChunkRequests = float64(out.Fetches) / wall.Seconds()
	return out, nil
}

// listeners is scenario 5.
func (b *bench) listeners() error {
	logf("scenario 5: listeners at 320 kbit/s for %v, N=%v, %d rounds, %d KiB chunks", b.cfg.ListenDur, b.cfg.ListenerNs,
		b.cfg.ListenRounds, b.cfg.ListenChunk>>10)
	type series struct {
		runs                                  []listenOutcome
		und, cpu, rss, ccpu, crss, start, req *sample
	}
	newSeries := func() *series {
		return &series{und: newSample("underruns"), cpu: newSample("% of a core"), rss: newSample("MiB"),
			ccpu: newSample("% of a core"), crss: newSample("MiB"), start: newSample("ms"), req: newSample("req/s")}
	}
	prot, plain := map[int]*series{}, map[int]*series{}
	for _, n := range b.cfg.ListenerNs {
		prot[n] = newSeries()
		if n == b.cfg.ListenBaseN {
			plain[n] = newSeries()
		}
	}
	for round := range b.cfg.ListenRounds {
		for _, n := range b.cfg.ListenerNs {
			order := []bool{true, false}
			if round%2 == 1 {
				order = []bool{false, true}
			}
			for _, protected := range order {
				s := prot[n]
				if !protected {
					if s = plain[n]; s == nil {
						continue
					}
				}
				o, err := b.listenRun(protected, n)
				if err != nil {
					return err
				}
				logf("  round %d N=%d protected=%v: %d underruns (%d listeners), %d errors, Caddy %.0f%% CPU %.0f MiB, client %.0f%% %.0f MiB, "+
					"start p50 %.0f max %.0f ms (%d > 1 s), max fetch %.0f ms, TCP %v",
					round+1, n, protected, o.Underruns, o.WithUnderrun, o.Errors, o.CaddyCPU, o.CaddyRSS, o.ClientCPU, o.ClientRSS,
					o.StartupP50, o.StartupMax, o.SlowStarts, o.MaxFetch, o.TCP)
				if o.Errors > 0 {
					b.note("Scenario 5 N=%d protected=%v round %d: %d failed fetches (retried); first: %s", n, protected, round+1, o.Errors, o.FirstErr)
				}
				s.runs = append(s.runs, o)
				s.und.add(float64(o.Underruns))
				s.cpu.add(o.CaddyCPU)
				s.rss.add(o.CaddyRSS)
				s.ccpu.add(o.ClientCPU)
				s.crss.add(o.ClientRSS)
				s.start.add(o.StartupMax)
				s.req.add(o.ChunkRequests)
			}
		}
	}
	raw := map[string]any{}
	maxN := slices.Max(b.cfg.ListenerNs)
	for _, n := range b.cfg.ListenerNs {
		p, q := prot[n], plain[n]
		raw[fmt.Sprintf("protected_%d", n)] = p.runs
		bl := func(s func(*series) *sample) (string, *sample) {
			if q == nil {
				return "", nil
			}
			raw[fmt.Sprintf("plain_https_%d", n)] = q.runs
			return "plain HTTPS Range listeners", s(q)
		}
		r := &row{Scenario: "5", Name: fmt.Sprintf("N=%d listeners: underruns (all listeners, per run)", n), Product: p.und}
		r.BaselineName, r.Baseline = bl(func(s *series) *sample { return s.und })
		if n == maxN {
			r.Target, r.Short = &target{"<=", 0, "product"}, fmt.Sprintf("5 underruns N=%d", n)
		}
		b.add(r)
		for _, m := range []struct {
			name string
			get  func(*series) *sample
		}{
			{"Caddy CPU", func(s *series) *sample { return s.cpu }},
			{"Caddy RSS (max)", func(s *series) *sample { return s.rss }},
			{"client process CPU", func(s *series) *sample { return s.ccpu }},
			{"client process RSS (max)", func(s *series) *sample { return s.crss }},
			{"slowest start (first chunk incl. handshake)", func(s *series) *sample { return s.start }},
		} {
			r := &row{Scenario: "5", Name: fmt.Sprintf("N=%d listeners: %s", n, m.name), Product: m.get(p)}
			r.BaselineName, r.Baseline = bl(m.get)
			b.add(r)
		}
	}
	b.raw("listeners", raw)
	b.note("Scenario 5: each listener starts within the first %v (random), at a random chunk of the %d MiB medium; protected "+
		"listeners are clientproxy.Client instances (default suites, own session and connection pool) against a fresh Caddy+drm "+
		"with chunk_size %d KiB: with 256 KiB chunks a 320 kbit/s listener asks for a chunk only every 6.5 s, so 30 s would "+
		"hold ~5 requests each and mostly measure the start; %d KiB (1.6 s of audio) means more, smaller requests and a buffer "+
		"of 1–2 chunks, the harder case for underruns. Plain listeners do the same with Range GETs over their own HTTPS "+
		"connection. CPU is over the whole run (start included); RSS is the max of VmRSS sampled every 250 ms; the client "+
		"process is this benchmark (all listeners in one Go process).",
		map[bool]string{true: "1s", false: "2s"}[b.cfg.Quick], b.cfg.FileSize>>20, b.cfg.ListenChunk>>10, b.cfg.ListenChunk>>10)
	return nil
}

// tcpCounters reads the kernel's TCP counters that tell dropped or
// delayed connections (listen queue overflows, SYN cookies, resets,
// retransmissions) from /proc/net/netstat and /proc/net/snmp.
func tcpCounters() map[string]int64 {
	want := map[string]bool{"ListenOverflows": true, "ListenDrops": true, "SyncookiesSent": true, "TCPReqQFullDrop": true,
		"TCPTimeouts": true, "TCPSynRetrans": true, "RetransSegs": true, "EstabResets": true, "TCPAbortOnMemory": true}
	out := map[string]int64{}
	for _, file := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := 1; j < len(names) && j < len(values); j++ {
				if want[names[j]] {
					v, _ := strconv.ParseInt(values[j], 10, 64)
					out[names[j]] = v
				}
			}
		}
	}
	return out
}
