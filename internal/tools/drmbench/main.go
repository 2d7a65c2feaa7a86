// Command drmbench measures caddy-drm against what its users would run
// instead, in one run on loopback: plain Caddy file_server over HTTPS
// (HTTP/1.1, tls internal) and plain HTTP. It starts Caddy (bin/caddy,
// with the drm module) and clientproxy itself on checked loopback ports,
// drives them with Go clients (the product's own protocol client for the
// protected side), and writes bench/results/results.{md,json} and
// chart.png. `make bench` builds it (in the tools module,
// internal/tools/go.mod) and runs it from the repository root;
// BENCH_QUICK=1 makes every scenario small, for smoke tests. See
// bench/README.md.
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/tools/reporoot"
	"github.com/caddy-drm/caddy-drm/keystore"
)

// config is the size of every scenario; quick mode shrinks all of them.
type config struct {
	Quick         bool          `json:"quick"`
	FileSize      int64         `json:"file_size"`
	TputRounds    int           `json:"throughput_rounds"`
	Window        int           `json:"protocol_client_window"`
	RateWorkers   int           `json:"rate_workers"`
	RateRounds    int           `json:"rate_rounds"`
	RateWarm      time.Duration `json:"rate_warmup_ns"`
	RateDur       time.Duration `json:"rate_duration_ns"`
	HSWorkers     int           `json:"handshake_workers"`
	GoBenchTime   string        `json:"go_benchtime"`
	GoBenchCount  int           `json:"go_bench_count"`
	LatencyRuns   int           `json:"latency_runs"`
	ListenerNs    []int         `json:"listener_counts"`
	ListenDur     time.Duration `json:"listener_duration_ns"`
	ListenRounds  int           `json:"listener_rounds"`
	ListenChunk   int           `json:"listener_chunk_size"`
	ListenBaseN   int           `json:"listener_baseline_n"`
	Sessions      int           `json:"sessions"`
	MemRounds     int           `json:"caddy_memory_rounds"`
	SessMemRounds int           `json:"inprocess_memory_rounds"`
}

func fullConfig() config {
	return config{
		FileSize: 256 << 20, TputRounds: 5, Window: 4,
		RateWorkers: 16, RateRounds: 3, RateWarm: time.Second, RateDur: 6 * time.Second,
		HSWorkers: 8, GoBenchTime: "1s", GoBenchCount: 5, LatencyRuns: 12,
		ListenerNs: []int{100, 1000}, ListenDur: 30 * time.Second, ListenRounds: 3,
		ListenChunk: 64 << 10, ListenBaseN: 1000,
		Sessions: 10000, MemRounds: 3, SessMemRounds: 5,
	}
}

func quickConfig() config {
	return config{
		Quick: true, FileSize: 32 << 20, TputRounds: 3, Window: 4,
		RateWorkers: 16, RateRounds: 3, RateWarm: 300 * time.Millisecond, RateDur: 1500 * time.Millisecond,
		HSWorkers: 8, GoBenchTime: "200ms", GoBenchCount: 3, LatencyRuns: 5,
		ListenerNs: []int{50}, ListenDur: 5 * time.Second, ListenRounds: 2,
		ListenChunk: 64 << 10, ListenBaseN: 50,
		Sessions: 1000, MemRounds: 2, SessMemRounds: 3,
	}
}

// bench is the state of one benchmark run.
type bench struct {
	cfg       config
	repo      string // the caddy-drm checkout (root module)
	caddyBin  string
	cpBin     string
	outDir    string
	tmp       string // removed at the end
	root      string // media served by every Caddy
	logDir    string
	caddyData string // XDG_DATA_HOME of the children (internal CA)
	childEnv  []string
	pkiRoot   string // drm PKI root, pinned by the clients
	cert, key string
	roots     *x509.CertPool
	bigID     string // the large medium
	only      map[string]bool
	profile   string
	res       *results
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s drmbench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	// The checkout: from its root (make bench) or from internal/tools.
	repo, err := reporoot.Find()
	if err != nil {
		fmt.Fprintln(os.Stderr, "drmbench:", err)
		os.Exit(1)
	}
	caddyBin := flag.String("caddy", filepath.Join(repo, "bin", "caddy"), "Caddy with the drm module (make caddy)")
	cpBin := flag.String("clientproxy", filepath.Join(repo, "bin", "clientproxy"), "clientproxy binary (make clientproxy)")
	out := flag.String("out", filepath.Join(repo, "bench", "results"), "directory for results.md, results.json and chart.png (quick mode: its quick/ subdirectory)")
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "small and fast (env BENCH_QUICK=1)")
	only := flag.String("only", os.Getenv("BENCH_ONLY"), "comma-separated scenarios to run (1-7), default all (env BENCH_ONLY)")
	profile := flag.String("profile", os.Getenv("BENCH_PROFILE"), "after measuring, write CPU profiles of Caddy and of the clients to this directory (env BENCH_PROFILE)")
	sessmem := flag.Int("sessmem", 0, "internal: measure the heap of this many in-process server sessions and print JSON")
	flag.Parse()
	if *sessmem > 0 {
		if err := sessMemChild(*sessmem); err != nil {
			fmt.Fprintln(os.Stderr, "drmbench:", err)
			os.Exit(1)
		}
		return
	}
	cfg := fullConfig()
	if *quick {
		// Quick figures go to a directory of their own, so a smoke test
		// never replaces the figures of a full run.
		cfg, *out = quickConfig(), filepath.Join(*out, "quick")
	}
	b := &bench{cfg: cfg, repo: repo, caddyBin: *caddyBin, cpBin: *cpBin, outDir: *out, profile: *profile}
	if *only != "" {
		b.only = map[string]bool{}
		for s := range strings.SplitSeq(*only, ",") {
			b.only[strings.TrimSpace(s)] = true
		}
	}
	code := 0
	if err := b.run(); err != nil {
		logf("%v", err)
		code = 1
	}
	os.Exit(code)
}

func (b *bench) want(scenario string) bool { return b.only == nil || b.only[scenario] }

func (b *bench) run() error {
	start := time.Now()
	for _, p := range []*string{&b.caddyBin, &b.cpBin, &b.outDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	for _, bin := range []string{b.caddyBin, b.cpBin} {
		if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable (run make caddy clientproxy): %v", bin, err)
		}
	}
	var err error
	if b.tmp, err = os.MkdirTemp("", "drmbench-"); err != nil {
		return err
	}
	defer b.cleanup()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigc
		logf("%v: stopping", s)
		b.cleanup()
		os.Exit(130)
	}()

	b.res = newResults(b)
	if err := b.setup(); err != nil {
		return err
	}
	type scenario struct {
		id  string
		run func() error
	}
	for _, s := range []scenario{
		{"3", b.goBench},
		{"6", b.sessionMemoryInProcess},
		{"1", b.throughput},
		{"2", b.chunkRate},
		{"4", b.latency},
		{"3", b.handshakeRate},
		{"6", b.sessionMemoryCaddy},
		{"5", b.listeners},
		{"7", b.handshakeFlood},
	} {
		if !b.want(s.id) {
			continue
		}
		t0 := time.Now()
		if err := s.run(); err != nil {
			logf("scenario %s failed: %v", s.id, err)
			b.res.Errors = append(b.res.Errors, fmt.Sprintf("scenario %s: %v", s.id, err))
		}
		stopAll() // nothing of a scenario outlives it
		b.res.Timings = append(b.res.Timings, timing{s.id, time.Since(t0).Round(time.Millisecond).String()})
	}
	if b.profile != "" {
		if err := b.profiles(); err != nil {
			logf("profiles: %v", err)
		}
		stopAll()
	}
	b.res.Duration = time.Since(start).Round(time.Second).String()
	md, err := b.res.write(b.outDir)
	if err != nil {
		return err
	}
	fmt.Println(md)
	if len(b.res.Errors) > 0 {
		return fmt.Errorf("%d scenario(s) failed; see results.md", len(b.res.Errors))
	}
	return nil
}

// setup makes the media, the drm PKI and the children's environment.
func (b *bench) setup() error {
	b.root = filepath.Join(b.tmp, "media")
	b.logDir = filepath.Join(b.tmp, "logs")
	home := filepath.Join(b.tmp, "home")
	b.caddyData = filepath.Join(home, "data")
	for _, d := range []string{b.root, b.logDir, b.caddyData, filepath.Join(home, "config"), filepath.Join(home, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	b.childEnv = []string{"HOME=" + home, "XDG_DATA_HOME=" + b.caddyData,
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "XDG_CACHE_HOME=" + filepath.Join(home, "cache")}
	b.bigID = "track.flac"
	t0 := time.Now()
	for _, f := range []struct {
		name string
		size int64
	}{{b.bigID, b.cfg.FileSize}, {"chunk.bin", 256 << 10}, {"small.bin", 1 << 10}} {
		if err := writeRandom(filepath.Join(b.root, f.name), f.size); err != nil {
			return err
		}
	}
	logf("media: %d MiB of random bytes in %v", b.cfg.FileSize>>20, time.Since(t0).Round(time.Millisecond))
	files, err := keystore.InitPKI(filepath.Join(b.tmp, "pki"), keystore.PKIOptions{})
	if err != nil {
		return err
	}
	b.pkiRoot, b.cert, b.key = files.RootCert, files.ServerCert, files.ServerKey
	b.roots, err = keystore.LoadRoots(files.RootCert)
	return err
}

func writeRandom(path string, size int64) error {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	r := rand.NewChaCha8(seed)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// cleanup stops every child and removes the temporary files (the large
// medium among them).
func (b *bench) cleanup() {
	stopAll()
	if b.tmp != "" {
		os.RemoveAll(b.tmp)
	}
}

// machineInfo describes where the run happened.
func machineInfo(caddyBin string) machine {
	m := machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().Format(time.RFC3339)}
	if out, err := exec.Command("nproc").Output(); err == nil {
		m.Nproc = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if out, err := exec.Command(caddyBin, "version").Output(); err == nil {
		m.Caddy = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	return m
}
