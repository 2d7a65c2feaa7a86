package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-drm/caddy-drm/clientproxy"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// profiles (-profile DIR) runs the main workloads continuously while it
// takes a CPU profile of Caddy (admin /debug/pprof/profile) and of this
// process (the clients and, for the end-to-end workload, an in-process
// clientproxy server built from the same package as bin/clientproxy), and
// writes NAME-{caddy,client}.prof plus `go tool pprof -top` summaries.
func (b *bench) profiles() error {
	dir, err := filepath.Abs(b.profile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	secs := 10
	if b.cfg.Quick {
		secs = 3
	}
	logf("profiles: %d s each into %s", secs, dir)
	sites := []site{staticSite("https", true), staticSite("http", false)}
	for _, f := range families {
		sites = append(sites, drmSite(f.key, "suites "+f.name))
	}
	c, err := b.startCaddy("profile", sites)
	if err != nil {
		return err
	}
	defer c.Stop()
	nChunks := (b.cfg.FileSize + 256<<10 - 1) / (256 << 10)
	ctx := context.Background()

	// The in-process clientproxy, for the end-to-end workload.
	cpClient, err := b.drmClient(c.url("gcm", "drm"), suitesOf(families[0].name), nil)
	if err != nil {
		return err
	}
	srv := clientproxy.NewServer(cpClient, clientproxy.ServerOptions{}, nil)
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hsrv := &http.Server{Handler: srv}
	go hsrv.Serve(ln)
	defer hsrv.Close()
	cpURL := fmt.Sprintf("http://%s/media/%s", ln.Addr(), b.bigID)

	hc := h1Client(c.roots, 16)
	hsc := h1Client(nil, 8)
	hsCfg := &protocol.ClientConfig{Suites: suitesOf(families[0].name), VerifyCertificate: b.verifier()}
	workloads := []struct {
		name    string
		workers int
		op      func() error
	}{
		{"plain-https", 1, func() error { _, err := getDiscard(ctx, hc, c.url("https", b.bigID), ""); return err }},
		{"protected-gcm", 1, func() error {
			cl, err := b.drmClient(c.url("gcm", "drm"), suitesOf(families[0].name), nil)
			if err != nil {
				return err
			}
			defer cl.Close(ctx)
			_, err = readOrdered(ctx, cl, b.bigID, nChunks, b.cfg.Window)
			return err
		}},
		{"protected-cbc", 1, func() error {
			cl, err := b.drmClient(c.url("cbc", "drm"), suitesOf(families[2].name), nil)
			if err != nil {
				return err
			}
			defer cl.Close(ctx)
			_, err = readOrdered(ctx, cl, b.bigID, nChunks, b.cfg.Window)
			return err
		}},
		{"e2e-gcm", 1, func() error {
			// A new connection per read: a cached tail would be served
			// from memory otherwise, but that is 64 of the chunks only.
			_, err := getDiscard(ctx, hc, cpURL, "")
			return err
		}},
		{"chunk-rate", 16, func() error {
			_, err := cpClient.ReadChunk(ctx, b.bigID, time.Now().UnixNano()%nChunks)
			return err
		}},
		{"https-256k", 16, func() error { _, err := getDiscard(ctx, hc, c.url("https", "chunk.bin"), ""); return err }},
		{"handshake-x25519", 8, func() error { _, err := handshake(ctx, hsc, c.url("gcm", "drm"), hsCfg); return err }},
		{"https-1k", 8, func() error { _, err := getDiscard(ctx, hc, c.url("https", "small.bin"), ""); return err }},
	}
	for _, w := range workloads {
		var stop atomic.Bool
		var wg sync.WaitGroup
		var failed atomic.Value
		for range w.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					t0 := time.Now()
					if err := w.op(); err != nil {
						failed.Store(err)
						return
					}
					if d := time.Since(t0); d > 5*time.Second {
						logf("  %s: one operation took %v", w.name, d.Round(time.Millisecond))
					}
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		cf, err := os.Create(filepath.Join(dir, w.name+"-client.prof"))
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(cf)
		prof, perr := c.adminGet(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), time.Duration(secs+30)*time.Second)
		pprof.StopCPUProfile()
		cf.Close()
		stop.Store(true)
		wg.Wait()
		if e := failed.Load(); e != nil {
			return fmt.Errorf("%s: %v", w.name, e)
		}
		if perr != nil {
			return fmt.Errorf("%s: caddy profile: %v", w.name, perr)
		}
		if err := os.WriteFile(filepath.Join(dir, w.name+"-caddy.prof"), prof, 0o644); err != nil {
			return err
		}
		for _, side := range []string{"caddy", "client"} {
			p := filepath.Join(dir, w.name+"-"+side+".prof")
			out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=35", p).CombinedOutput()
			if err == nil {
				err = os.WriteFile(p+".top.txt", out, 0o644)
			}
			if err != nil {
				logf("pprof -top %s: %v", p, err)
			}
		}
		logf("  profiled %s", w.name)
	}
	return nil
}
