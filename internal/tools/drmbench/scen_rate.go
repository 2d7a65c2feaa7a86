package main

import (
	"context"
	"fmt"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// rateVariant is one request loop of a fixed-duration scenario.
type rateVariant struct {
	key   string
	op    func(ctx context.Context, w int, seq int64) (int64, error)
	rate  *sample // operations per second
	cpuOp *sample // server CPU milliseconds per operation
}

// runRates runs every variant once per round (order rotated) with the same
// worker count and window, and records rate and server CPU per op.
func (b *bench) runRates(c *caddyInst, workers int, variants []*rateVariant) error {
	for _, v := range variants {
		v.rate, v.cpuOp = newSample("req/s"), newSample("ms CPU/op")
	}
	for round := range b.cfg.RateRounds {
		for i := range variants {
			v := variants[(i+round)%len(variants)]
			r := runLoad(workers, b.cfg.RateWarm, b.cfg.RateDur, c.Pid(), v.op)
			if err := r.check(v.key); err != nil {
				return err
			}
			v.rate.add(r.rate())
			v.cpuOp.add(r.serverCPU * 1000 / float64(r.ops))
			logf("  round %d %s: %.0f/s, %.3f ms server CPU each", round+1, v.key, r.rate(), r.serverCPU*1000/float64(r.ops))
		}
	}
	return nil
}

// chunkRate is scenario 2: chunk requests per second over 16 connections
// of one session, against static files of the chunk size.
func (b *bench) chunkRate() error {
	w := b.cfg.RateWorkers
	logf("scenario 2: chunk requests/s, %d workers, %d rounds of %v", w, b.cfg.RateRounds, b.cfg.RateDur)
	c, err := b.startCaddy("rate", []site{staticSite("https", true), staticSite("http", false),
		drmSite("gcm", "suites X25519_AES128_GCM_SHA256")})
	if err != nil {
		return err
	}
	defer c.Stop()
	ctx := context.Background()
	nChunks := b.cfg.FileSize / (256 << 10)
	// One session, one pool of up to 32 keep-alive connections (the
	// client's default), shared by the workers.
	cl, err := b.drmClient(c.url("gcm", "drm"), suitesOf("X25519_AES128_GCM_SHA256"), nil)
	if err != nil {
		return err
	}
	defer cl.Close(ctx)
	if _, err := cl.ChunkSize(ctx); err != nil {
		return err
	}
	lean, err := b.newLeanClient(ctx, c.url("gcm", "drm"), suitesOf("X25519_AES128_GCM_SHA256"))
	if err != nil {
		return err
	}
	static := func(name string) func(context.Context, int, int64) (int64, error) {
		hc := h1Client(c.roots, w)
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			return getDiscard(ctx, hc, c.url(name, "chunk.bin"), "")
		}
	}
	vs := []*rateVariant{
		{key: "drm-chunk", op: func(ctx context.Context, _ int, seq int64) (int64, error) {
			d, err := cl.ReadChunk(ctx, b.bigID, seq%nChunks)
			return int64(len(d)), err
		}},
		{key: "drm-chunk-lean", op: func(ctx context.Context, _ int, seq int64) (int64, error) {
			p, release, err := lean.readChunk(ctx, b.bigID, seq%nChunks)
			if err != nil {
				return 0, err
			}
			release()
			return int64(len(p)), nil
		}},
		{key: "https-static", op: static("https")},
		{key: "http-static", op: static("http")},
	}
	if err := b.runRates(c, w, vs); err != nil {
		return err
	}
	b.raw("chunk_rate", map[string]any{"drm_chunk": vs[0], "drm_chunk_lean": vs[1], "https_static": vs[2], "http_static": vs[3]})
	prod, leanV, https, http := vs[0], vs[1], vs[2], vs[3]
	b.add(&row{Scenario: "2", Name: fmt.Sprintf("256 KiB chunk requests/s, %d conns, one session (plain HTTP)", w),
		Product: prod.rate, BaselineName: "HTTPS GET of a 256 KiB file", Baseline: https.rate,
		Target: &target{">=", 0.85, "ratio"}, Short: "2 chunk req/s vs HTTPS"})
	b.add(&row{Scenario: "2", Name: "256 KiB chunk requests/s vs plain HTTP static", Product: prod.rate,
		BaselineName: "HTTP GET of a 256 KiB file", Baseline: http.rate})
	b.add(&row{Scenario: "2", Name: "256 KiB chunk requests/s, lean client (pooled buffers)", Product: leanV.rate,
		BaselineName: "HTTPS GET of a 256 KiB file", Baseline: https.rate})
	b.add(&row{Scenario: "2", Name: "Caddy CPU per chunk request", Product: prod.cpuOp,
		BaselineName: "per HTTPS 256 KiB GET", Baseline: https.cpuOp})
	b.add(&row{Scenario: "2", Name: "Caddy CPU per chunk request, lean client", Product: leanV.cpuOp,
		BaselineName: "per HTTPS 256 KiB GET", Baseline: https.cpuOp})
	b.note("Scenario 2: %d workers send back-to-back requests for %v after %v of warm-up; the protected ones are "+
		"clientproxy.Client.ReadChunk calls of one session (AES-GCM suite) cycling through the chunks of the large medium "+
		"(rekeys every 500 chunks included, as deployed); the baselines GET a 256 KiB file with the same worker count, keep-alive.",
		w, b.cfg.RateDur, b.cfg.RateWarm)
	return nil
}

// handshakeRate is scenario 3b: full handshakes per second through Caddy
// over keep-alive connections, against Caddy's HTTPS rate for 1 KiB.
func (b *bench) handshakeRate() error {
	w := b.cfg.HSWorkers
	logf("scenario 3b: handshakes/s over HTTP, %d workers, %d rounds of %v", w, b.cfg.RateRounds, b.cfg.RateDur)
	// The per-address budget of unused handshakes is lifted: this
	// measures what a handshake costs, and its sessions are never used.
	const noBudget = "unused_handshakes_per_address 1000000000"
	c, err := b.startCaddy("handshake", []site{staticSite("https", true),
		drmSite("x25519", "suites X25519_AES128_GCM_SHA256", noBudget), drmSite("default", noBudget)})
	if err != nil {
		return err
	}
	defer c.Stop()
	hsOp := func(siteName, suite string) func(context.Context, int, int64) (int64, error) {
		hc := h1Client(nil, w)
		cfg := &protocol.ClientConfig{Suites: suitesOf(suite), VerifyCertificate: b.verifier()}
		url := c.url(siteName, "drm")
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			_, err := handshake(ctx, hc, url, cfg)
			return 0, err
		}
	}
	hcs := h1Client(c.roots, w)
	vs := []*rateVariant{
		{key: "hs-x25519", op: hsOp("x25519", "X25519_AES128_GCM_SHA256")},
		{key: "hs-hybrid", op: hsOp("default", "X25519MLKEM768_AES128_GCM_SHA256")},
		{key: "https-1k", op: func(ctx context.Context, _ int, _ int64) (int64, error) {
			return getDiscard(ctx, hcs, c.url("https", "small.bin"), "")
		}},
	}
	if err := b.runRates(c, w, vs); err != nil {
		return err
	}
	for _, v := range vs {
		v.rate.Unit = "/s"
	}
	b.raw("handshake_rate", map[string]any{"x25519": vs[0], "hybrid": vs[1], "https_1k": vs[2]})
	for i, g := range []string{"X25519", "X25519MLKEM768 (default)"} {
		b.add(&row{Scenario: "3", Name: fmt.Sprintf("full handshakes/s over HTTP, %s, %d workers, keep-alive", g, w),
			Product: vs[i].rate, BaselineName: "HTTPS GET 1 KiB (1 round trip)", Baseline: vs[2].rate,
			Target: &target{">=", 0.5, "ratio"}, Short: "3 handshakes/s " + map[int]string{0: "X25519", 1: "hybrid"}[i] + " vs HTTPS"})
	}
	for i, g := range []string{"X25519", "X25519MLKEM768"} {
		perCore := &sample{Unit: "handshakes/s per Caddy core"}
		for _, ms := range vs[i].cpuOp.Values {
			perCore.add(1000 / ms)
		}
		b.add(&row{Scenario: "3", Name: "Caddy CPU per handshake over HTTP, " + g + ", as a rate per core", Product: perCore})
	}
	b.note("Scenario 3b: each worker runs ClientConfig.Start, POST {prefix}/v1/handshake and ClientHandshake.Finish " +
		"(certificate chain and signature verified) in a loop over keep-alive HTTP/1.1 connections (plain HTTP, as clientproxy " +
		"talks to the drm site); the client offers only the measured suite. Caddy's identity is the default dev PKI (ECDSA P-256). " +
		"A handshake leaves no session (it lives in its ticket until its first request); the per-address budget of unused " +
		"handshakes is lifted (unused_handshakes_per_address 1000000000) so that every one is signed. Client and Caddy share the 2 cores.")
	return nil
}
