package e2e

// Handshake floods against a real Caddy (issue: a replayed ClientHello
// must cost the server nothing lasting): sessions enter the table only
// with their first authenticated request, and unused handshakes are
// budgeted per client address — Caddy's client IP, so that behind a
// trusted proxy each listener has its own budget.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

const floodCaddyfile = `http://127.0.0.1:{{.Port}} {
	drm {
		identity {{q .Cert}} {{q .Key}}
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

// floodSetup is a drm Caddy with its admin endpoint (for /metrics)
// serving tone.flac.
type floodSetup struct {
	caddy *caddyServer
	pki   string
	media mediaFile
}

func startFlood(t *testing.T, global ...string) *floodSetup {
	t.Helper()
	requireE2E(t, "mpv", "ffmpeg")
	root := t.TempDir()
	m, err := makeOne(root, mediaSpecs[0])
	if err != nil {
		t.Fatal(err)
	}
	caddyBin := caddyBinary(t)
	pki := devPKI(t, caddyBin)
	vars := map[string]any{"Root": root, "Cert": filepath.Join(pki, "server.crt"), "Key": filepath.Join(pki, "server.key")}
	srv := startCaddy(t, caddyBin, floodCaddyfile, vars, &caddyOptions{Admin: true, Global: global})
	return &floodSetup{caddy: srv, pki: pki, media: m}
}

// flooder replays one ClientHello from a local address.
type flooder struct {
	hc      *http.Client
	url     string
	hello   []byte
	begun   chan struct{} // closed when the first request returns
	onFirst sync.Once
}

func newFlooder(t *testing.T, s *floodSetup, from string) *flooder {
	t.Helper()
	_, hello, err := (&protocol.ClientConfig{Suites: protocol.DefaultSuites()[:1]}).Start()
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &flooder{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: s.caddy.URL("drm/v1/handshake"),
		hello: hello, begun: make(chan struct{})}
}

// floodResult counts the answers to a flood.
type floodResult struct {
	sent, ok, busy int
	other          int
	retryAfter     bool // every busy answer had Retry-After
	elapsed        time.Duration
}

// send posts the ClientHello at least n times, and on until until is
// closed (nil: n times), on workers connections, each with the
// X-Forwarded-For that xff returns ("" for none).
func (f *flooder) send(t *testing.T, n, workers int, xff func() string, until <-chan struct{}) floodResult {
	t.Helper()
	var mu sync.Mutex
	r := floodResult{retryAfter: true}
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				req, _ := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(f.hello))
				req.Header.Set("Content-Type", "application/json")
				if v := xff(); v != "" {
					req.Header.Set("X-Forwarded-For", v)
				}
				resp, err := f.hc.Do(req)
				f.onFirst.Do(func() { close(f.begun) })
				if err != nil {
					t.Errorf("flood: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusOK:
					r.ok++
				case resp.StatusCode == http.StatusServiceUnavailable && strings.HasPrefix(resp.Header.Get("Drm-Error"), "busy: "):
					r.busy++
					r.retryAfter = r.retryAfter && resp.Header.Get("Retry-After") != ""
				default:
					r.other++
					t.Errorf("flood: %s, Drm-Error %q", resp.Status, resp.Header.Get("Drm-Error"))
				}
				mu.Unlock()
			}
		}()
	}
	for r.sent = 0; r.sent < n || !closed(until); r.sent++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// closed reports whether c is closed; a nil c counts as closed.
func closed(c <-chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// allowed is the most handshakes one address can have answered in d: the
// default budget (64) and one refill a second.
func allowed(d time.Duration) int { return 64 + int(d/time.Second) + 1 }

// metric sums the values of a metric (all label sets) on caddy's admin
// /metrics.
func (s *floodSetup) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.caddy.AdminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum, seen := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum, seen = sum+v, true
	}
	if !seen && name != "caddy_drm_sessions" {
		t.Fatalf("no %s%v in caddy's metrics", name, labels)
	}
	return sum
}

// TestHandshakeFloodBesideAListener: 2,000 replays of one ClientHello from
// 127.0.0.2 — with forged X-Forwarded-For headers, which Caddy ignores
// without trusted_proxies — leave no session in the table, are answered
// 503 busy with Retry-After past the address's budget, and a listener on
// 127.0.0.1 plays the medium meanwhile, every sample as ffmpeg decodes it.
func TestHandshakeFloodBesideAListener(t *testing.T) {
	s := startFlood(t)
	f := newFlooder(t, s, "127.0.0.2")
	flooded, played := make(chan floodResult, 1), make(chan struct{})
	stopFlood := sync.OnceFunc(func() { close(played) })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // send reports with t.Errorf only: it may run beside the test
		defer wg.Done()
		flooded <- f.send(t, 2000, 8, func() string { return fmt.Sprintf("198.51.100.%d", rand.IntN(250)+1) }, played)
	}()
	t.Cleanup(func() { stopFlood(); wg.Wait() }) // a failed listener ends the flood too
	// The listener starts once the flood is under way, and the flood goes
	// on until it has played.
	<-f.begun
	cp := startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), filepath.Join(s.pki, "root.crt"))
	pcm := mpvPCM(t, cp.MediaURL(s.media.ID), 0)
	stopFlood()
	r := <-flooded
	t.Logf("flood: %d sent, %d answered, %d busy in %v (%.0f/s)", r.sent, r.ok, r.busy, r.elapsed.Round(time.Millisecond), float64(r.sent)/r.elapsed.Seconds())
	if r.ok == 0 || r.ok > allowed(r.elapsed) || r.ok+r.busy != r.sent || !r.retryAfter {
		t.Errorf("flood from one address: %d answered, %d busy (Retry-After on all: %v); want at most %d answered, the rest busy",
			r.ok, r.busy, r.retryAfter, allowed(r.elapsed))
	}
	if n := s.metric(t, "caddy_drm_handshakes_total", `result="throttled"`); int(n) != r.busy {
		t.Errorf("caddy counted %v throttled handshakes, the flood saw %d", n, r.busy)
	}
	comparePCM(t, pcm, ffmpegPCM(t, s.media.Path, 0))
	// The listener's session is the only one in the table.
	if n := s.metric(t, "caddy_drm_sessions"); n != 1 {
		t.Errorf("%v sessions in the table after the flood and one listener, want 1", n)
	}
}

// TestHandshakeBudgetBehindAProxy: with trusted_proxies, the budget is
// per forwarded client address: one address's flood does not throttle
// another's handshakes, and an address whose handshakes are used (a
// request follows each) is never throttled, however many it makes.
func TestHandshakeBudgetBehindAProxy(t *testing.T) {
	s := startFlood(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For\n\t}")
	f := newFlooder(t, s, "127.0.0.1")
	flood := f.send(t, 300, 4, func() string { return "203.0.113.9" }, nil)
	if flood.ok == 0 || flood.ok > allowed(flood.elapsed) || flood.busy == 0 {
		t.Fatalf("flood from 203.0.113.9 behind the proxy: %d answered, %d busy", flood.ok, flood.busy)
	}
	if other := f.send(t, 10, 1, func() string { return "203.0.113.10" }, nil); other.ok != 10 {
		t.Errorf("another address behind the same proxy: %d of 10 answered", other.ok)
	}
	// 150 sessions, each used, from one forwarded address: more than its
	// budget of unused handshakes, and none refused.
	roots, err := keystore.LoadRoots(filepath.Join(s.pki, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if err := useSession(f.hc, s.caddy.URL("drm"), roots, "203.0.113.11"); err != nil {
			t.Fatalf("used session %d from 203.0.113.11: %v", i+1, err)
		}
	}
	if n := s.metric(t, "caddy_drm_sessions"); n != 150 {
		t.Errorf("%v sessions in the table, want the 150 used ones", n)
	}
}

// useSession runs a handshake and a catalog request as a listener at
// address xff behind the proxy.
func useSession(hc *http.Client, prefix string, roots *x509.CertPool, xff string) error {
	hs, hello, err := (&protocol.ClientConfig{Suites: protocol.DefaultSuites()[:1],
		VerifyCertificate: keystore.ServerVerifier(roots, "127.0.0.1")}).Start()
	if err != nil {
		return err
	}
	reply, err := postAs(hc, prefix+"/v1/handshake", hello, xff)
	if err != nil {
		return err
	}
	sess, err := hs.Finish(reply)
	if err != nil {
		return err
	}
	req := sess.NewCatalogRequest()
	reply, err = postAs(hc, prefix+"/v1/catalog", req.Envelope(), xff)
	if err != nil {
		return err
	}
	_, err = req.OpenReply(reply)
	return err
}

func postAs(hc *http.Client, url string, body []byte, xff string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Forwarded-For", xff)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: Drm-Error %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	return b, err
}
