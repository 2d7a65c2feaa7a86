package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

var bgCtx = context.Background()

// sessMemResult is what the -sessmem child prints.
type sessMemResult struct {
	Sessions        int     `json:"sessions"`
	HeapBefore      uint64  `json:"heap_before"`
	HeapAfter       uint64  `json:"heap_after"`
	BytesPerSession float64 `json:"bytes_per_session"`
	Suite           string  `json:"suite"`
}

// ticketKey is a fixed ticket key for the in-process server.
type ticketKey [32]byte

func newTicketKey() *ticketKey {
	var k ticketKey
	rand.Read(k[:])
	return &k
}

func (k *ticketKey) Current() (uint32, [32]byte) { return 1, *k }

func (k *ticketKey) Lookup(id uint32) ([32]byte, bool) { return *k, id == 1 }

// sessMemChild runs in a process of its own (drmbench -sessmem N): it
// accepts n handshakes with the protocol package, as the drm handler does
// (default suites, ECDSA P-256 identity, default chunk size and limits),
// keeps every ServerSession in a map entry like the handler's memory
// store, and prints the HeapAlloc growth after GC per session.
func sessMemChild(n int) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	srv, err := protocol.NewServer(protocol.ServerConfig{Endpoint: "bench", Suites: protocol.DefaultSuites(),
		Identity: protocol.Identity{Signer: key, Chain: [][]byte{der}}, ChunkSize: protocol.DefaultChunkSize,
		Limits: protocol.DefaultLimits(), Tickets: newTicketKey()})
	if err != nil {
		return err
	}
	// The client offers the suite the server prefers (it is negotiated
	// either way); fewer key shares make the hellos cheaper to produce.
	ccfg := &protocol.ClientConfig{Suites: protocol.DefaultSuites()[:1]}
	type stored struct {
		s        *protocol.ServerSession
		lastUsed time.Time
	}
	store := map[protocol.SessionID]*stored{}
	accept := func() (*protocol.ServerSession, error) {
		_, hello, err := ccfg.Start()
		if err != nil {
			return nil, err
		}
		// The handler's store holds the session its first request brings
		// back from the ticket.
		hs, reply, err := srv.Accept(hello)
		if err != nil {
			return nil, err
		}
		var signed struct {
			Ticket []byte `json:"ticket"`
		}
		if err := json.Unmarshal(reply, &signed); err != nil {
			return nil, err
		}
		return srv.Resume(signed.Ticket, hs.Session)
	}
	warm, err := accept() // first-use allocations (suite tables, pools)
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for range n {
		s, err := accept()
		if err != nil {
			return err
		}
		store[s.ID()] = &stored{s: s, lastUsed: time.Now()}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	after := ms.HeapAlloc
	runtime.KeepAlive(store)
	runtime.KeepAlive(warm)
	return json.NewEncoder(os.Stdout).Encode(sessMemResult{Sessions: n, HeapBefore: before, HeapAfter: after,
		BytesPerSession: (float64(after) - float64(before)) / float64(n), Suite: warm.Suite().Name()})
}

// sessionMemoryInProcess is scenario 6b: the -sessmem child, several times.
func (b *bench) sessionMemoryInProcess() error {
	logf("scenario 6b: heap per idle session in process, %d sessions, %d runs", b.cfg.Sessions, b.cfg.SessMemRounds)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	kib := newSample("KiB/session")
	var suite string
	for range b.cfg.SessMemRounds {
		out, err := exec.Command(self, "-sessmem", fmt.Sprint(b.cfg.Sessions)).Output()
		if err != nil {
			return fmt.Errorf("-sessmem child: %v", err)
		}
		var r sessMemResult
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("-sessmem child said %q: %v", out, err)
		}
		kib.add(r.BytesPerSession / 1024)
		suite = r.Suite
	}
	b.raw("session_memory_inprocess", kib)
	b.add(&row{Scenario: "6", Name: fmt.Sprintf("in process: heap per idle ServerSession + store entry, %d sessions (%s)", b.cfg.Sessions, suite),
		Product: kib, Target: &target{"<=", 8, "product"}, Short: "6 KiB/session in process"})
	return nil
}

// runCount runs total operations on workers goroutines and returns the
// first error.
func runCount(workers, total int, op func() error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				if err := op(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// sessionMemoryCaddy is scenario 6a: a fresh Caddy+drm per round, its RSS
// (and its HeapAlloc after a forced GC, through the admin endpoint)
// before and after N handshakes whose sessions stay idle.
func (b *bench) sessionMemoryCaddy() error {
	n := b.cfg.Sessions
	logf("scenario 6a: Caddy memory per idle session, %d handshakes, %d rounds", n, b.cfg.MemRounds)
	rssS, heapS := newSample("KiB/session"), newSample("KiB/session")
	for range b.cfg.MemRounds {
		c, err := b.startCaddy("memory", []site{drmSite("default")})
		if err != nil {
			return err
		}
		hc := h1Client(nil, b.cfg.HSWorkers)
		cfg := &protocol.ClientConfig{VerifyCertificate: b.verifier(), Suites: protocol.DefaultSuites()}
		url := c.url("default", "drm")
		op := func() error { _, err := openSession(bgCtx, hc, url, cfg); return err }
		if err := runCount(b.cfg.HSWorkers, 50, op); err != nil { // warm-up
			c.Stop()
			return err
		}
		heap0, err := c.heapAlloc()
		if err != nil {
			c.Stop()
			return err
		}
		rss0, _ := rssBytes(c.Pid())
		if err := runCount(b.cfg.HSWorkers, n, op); err != nil {
			c.Stop()
			return err
		}
		closeIdle(hc)
		time.Sleep(200 * time.Millisecond)
		heap1, err := c.heapAlloc()
		rss1, _ := rssBytes(c.Pid())
		c.Stop()
		if err != nil {
			return err
		}
		rssS.add(float64(rss1-rss0) / float64(n) / 1024)
		heapS.add((heap1 - heap0) / float64(n) / 1024)
		logf("  RSS %+.1f MiB, heap %+.1f MiB", float64(rss1-rss0)/(1<<20), (heap1-heap0)/(1<<20))
	}
	b.raw("session_memory_caddy", map[string]any{"rss_kib_per_session": rssS, "heap_kib_per_session": heapS})
	b.add(&row{Scenario: "6", Name: fmt.Sprintf("Caddy: RSS growth per idle session, %d handshakes", n), Product: rssS,
		Target: &target{"<=", 8, "product"}, Short: "6 KiB/session Caddy RSS"})
	b.add(&row{Scenario: "6", Name: "Caddy: HeapAlloc growth per idle session (after forced GC, admin expvar)", Product: heapS})
	b.note("Scenario 6: sessions from default-suite handshakes (hybrid X25519MLKEM768 negotiated), each used by one catalog request " +
		"(a session enters the server's table with its first request), then left idle. Caddy's RSS includes " +
		"garbage of the handshakes not yet returned to the OS; its HeapAlloc is read from /debug/vars after /debug/pprof/heap?gc=1 " +
		"(admin on a loopback port). The in-process figure keeps each ServerSession in a map entry shaped like the handler's memory store.")
	return nil
}
