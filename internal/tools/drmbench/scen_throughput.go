package main

import (
	"context"
	"fmt"
	"time"
)

// suiteFamily is one of the three record protections measured.
type suiteFamily struct {
	key, name, label string
	target           float64 // protected/plain-HTTPS throughput target
}

var families = []suiteFamily{
	{"gcm", "X25519_AES128_GCM_SHA256", "AES-GCM", 0.75},
	{"chacha", "X25519_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305", 0.5},
	{"cbc", "X25519_AES128_CBC_SHA256", "CBC+HMAC", 0.3},
}

// tputRun is one read of the whole medium.
type tputRun struct {
	bytes    int64
	wall     time.Duration
	caddyCPU float64
	proxyCPU float64 // clientproxy's, for the end-to-end variant
}

type tputVariant struct {
	key  string
	run  func() (tputRun, error)
	mibs *sample // MiB/s
	cpu  *sample // Caddy CPU seconds per GiB
	pcpu *sample // clientproxy CPU seconds per GiB
}

// throughput is scenario 1: one stream reading the whole medium, plain
// (HTTPS, HTTP) and protected (per suite family: the product's protocol
// client straight to Caddy+drm, and the real clientproxy in front of it).
func (b *bench) throughput() error {
	logf("scenario 1: single-stream throughput of a %d MiB medium, %d rounds", b.cfg.FileSize>>20, b.cfg.TputRounds)
	sites := []site{staticSite("https", true), staticSite("http", false)}
	for _, f := range families {
		sites = append(sites, drmSite(f.key, "suites "+f.name))
	}
	c, err := b.startCaddy("throughput", sites)
	if err != nil {
		return err
	}
	defer c.Stop()
	size := b.cfg.FileSize
	nChunks := (size + 256<<10 - 1) / (256 << 10)
	ctx := context.Background()

	timed := func(f func() (int64, error), extraPid int) (tputRun, error) {
		m := startCPU(c.Pid())
		var pm cpuMeter
		if extraPid > 0 {
			pm = startCPU(extraPid)
		}
		t0 := time.Now()
		n, err := f()
		r := tputRun{bytes: n, wall: time.Since(t0)}
		r.caddyCPU, _ = m.stop()
		if extraPid > 0 {
			r.proxyCPU, _ = pm.stop()
		}
		if err == nil && n != size {
			err = fmt.Errorf("read %d of %d bytes", n, size)
		}
		return r, err
	}
	plain := func(name string) func() (tputRun, error) {
		hc := h1Client(c.roots, 2)
		return func() (tputRun, error) {
			return timed(func() (int64, error) { return getDiscard(ctx, hc, c.url(name, b.bigID), "") }, 0)
		}
	}
	variants := []*tputVariant{{key: "https", run: plain("https")}, {key: "http", run: plain("http")}}
	for _, f := range families {
		variants = append(variants, &tputVariant{key: "srv-" + f.key, run: func() (tputRun, error) {
			cl, err := b.drmClient(c.url(f.key, "drm"), suitesOf(f.name), nil)
			if err != nil {
				return tputRun{}, err
			}
			defer cl.Close(ctx)
			return timed(func() (int64, error) { return readOrdered(ctx, cl, b.bigID, nChunks, b.cfg.Window) }, 0)
		}})
	}
	for _, f := range families {
		variants = append(variants, &tputVariant{key: "lean-" + f.key, run: func() (tputRun, error) {
			l, err := b.newLeanClient(ctx, c.url(f.key, "drm"), suitesOf(f.name))
			if err != nil {
				return tputRun{}, err
			}
			defer closeIdle(l.hc)
			return timed(func() (int64, error) { return readOrderedLean(ctx, l, b.bigID, nChunks, b.cfg.Window) }, 0)
		}})
	}
	for _, f := range families {
		hc := h1Client(nil, 2)
		variants = append(variants, &tputVariant{key: "e2e-" + f.key, run: func() (tputRun, error) {
			// A fresh clientproxy per run: its cache would otherwise
			// serve the last chunks of the previous run.
			cp, err := b.startClientProxy(c.url(f.key, "drm"), "--suites", f.name)
			if err != nil {
				return tputRun{}, err
			}
			defer cp.Stop()
			defer closeIdle(hc)
			return timed(func() (int64, error) { return getDiscard(ctx, hc, cp.url("media/"+b.bigID), "") }, cp.Pid())
		}})
	}
	for _, v := range variants {
		v.mibs, v.cpu, v.pcpu = newSample("MiB/s"), newSample("CPU s/GiB"), newSample("CPU s/GiB")
		if _, err := v.run(); err != nil { // warm-up: page cache, TLS, catalog
			return fmt.Errorf("%s warm-up: %w", v.key, err)
		}
	}
	for round := range b.cfg.TputRounds {
		for i := range variants {
			v := variants[(i+round)%len(variants)] // rotate the order
			r, err := v.run()
			if err != nil {
				return fmt.Errorf("%s round %d: %w", v.key, round, err)
			}
			gib := float64(r.bytes) / (1 << 30)
			v.mibs.add(float64(r.bytes) / (1 << 20) / r.wall.Seconds())
			v.cpu.add(r.caddyCPU / gib)
			v.pcpu.add(r.proxyCPU / gib)
		}
		logf("  round %d done", round+1)
	}
	get := map[string]*tputVariant{}
	raw := map[string]any{}
	for _, v := range variants {
		get[v.key] = v
		raw[v.key] = map[string]any{"mib_per_s": v.mibs, "caddy_cpu_s_per_gib": v.cpu, "clientproxy_cpu_s_per_gib": v.pcpu}
	}
	b.raw("throughput", raw)
	https, http := get["https"], get["http"]
	b.add(&row{Scenario: "1", Name: "plain HTTP file_server (for reference)", Product: http.mibs,
		BaselineName: "plain HTTPS", Baseline: https.mibs})
	for _, f := range families {
		b.add(&row{Scenario: "1", Name: "protected server path, " + f.label, Product: get["srv-"+f.key].mibs,
			BaselineName: "plain HTTPS", Baseline: https.mibs,
			Target: &target{">=", f.target, "ratio"}, Short: "1 throughput " + f.label})
	}
	for _, f := range families {
		b.add(&row{Scenario: "1", Name: "protected server path, lean client (pooled buffers), " + f.label, Product: get["lean-"+f.key].mibs,
			BaselineName: "plain HTTPS", Baseline: https.mibs})
	}
	for _, f := range families {
		r := &row{Scenario: "1", Name: "end to end through clientproxy, " + f.label, Product: get["e2e-"+f.key].mibs,
			BaselineName: "plain HTTPS", Baseline: https.mibs}
		if f.key == "gcm" {
			r.Target, r.Short = &target{">=", 0.5, "ratio"}, "1 e2e via clientproxy AES-GCM"
		}
		b.add(r)
	}
	b.add(&row{Scenario: "1", Name: "protected server path AES-GCM vs plain HTTP", Product: get["srv-gcm"].mibs,
		BaselineName: "plain HTTP", Baseline: http.mibs})
	b.add(&row{Scenario: "1", Name: "Caddy CPU per GiB, protected AES-GCM, lean client", Product: get["lean-gcm"].cpu,
		BaselineName: "plain HTTPS", Baseline: https.cpu})
	for _, f := range families {
		r := &row{Scenario: "1", Name: "Caddy CPU per GiB, protected " + f.label, Product: get["srv-"+f.key].cpu,
			BaselineName: "plain HTTPS", Baseline: https.cpu}
		if f.key == "gcm" {
			r.Target, r.Short = &target{"<=", 1.3, "ratio"}, "1 server CPU/GiB AES-GCM"
		}
		b.add(r)
	}
	b.add(&row{Scenario: "1", Name: "clientproxy CPU per GiB, end to end AES-GCM (Caddy's: " + get["e2e-gcm"].cpu.String() + ")",
		Product: get["e2e-gcm"].pcpu})
	b.note("Scenario 1: the medium is %d MiB of random bytes (.flac), page-cached (one warm-up read per variant). "+
		"Plain: Go client, HTTP/1.1 (TLSNextProto empty, ForceAttemptHTTP2 off; Caddy `protocols h1`), keep-alive, body into io.Discard. "+
		"Protected server path: clientproxy.Client (one new session per run, handshake included) keeping %d chunk requests in flight "+
		"(a slot frees when its reply arrives), handed on strictly in order through a reorder buffer, over plain HTTP; Caddy has `suites <one>`. The lean client (rows marked so) makes the same protocol "+
		"calls with pooled buffers, to tell the server's limit from the product client's. End to end: a fresh bin/clientproxy per run (default --prefetch), "+
		"the same Go client reading /media/<id>. The default rekey limit (500 chunks) means a rekey every 125 MiB. "+
		"CPU is utime+stime of the Caddy process from /proc (CLK_TCK %d) around each read.", size>>20, b.cfg.Window, int(clkTck))
	return nil
}
