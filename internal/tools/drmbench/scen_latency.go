package main

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// latency is scenario 4: play start from a cold clientproxy, and seeking
// in the middle of the medium on a warm one.
func (b *bench) latency() error {
	runs := b.cfg.LatencyRuns
	logf("scenario 4: play start and seek latency, %d runs each", runs)
	c, err := b.startCaddy("latency", []site{staticSite("https", true), drmSite("default")})
	if err != nil {
		return err
	}
	defer c.Stop()
	prefix := c.url("default", "drm")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

	// Play start: a new clientproxy per run, ready (/healthz answers, no
	// session yet); timed from the request to the first byte of the
	// medium. Baseline: a new HTTPS connection (TCP + TLS handshake) to
	// plain Caddy and the first byte of the file.
	play, playBase := newSample("ms"), newSample("ms")
	for i := range runs + 1 { // run 0 is a warm-up
		cp, err := b.startClientProxy(prefix)
		if err != nil {
			return err
		}
		hc := h1Client(nil, 1)
		d, err := ttfb(hc, cp.url("media/"+b.bigID), "")
		closeIdle(hc)
		cp.Stop()
		if err != nil {
			return fmt.Errorf("play start: %w", err)
		}
		hs := h1Client(c.roots, 1)
		db, err := ttfb(hs, c.url("https", b.bigID), "")
		closeIdle(hs)
		if err != nil {
			return fmt.Errorf("play start baseline: %w", err)
		}
		if i > 0 {
			play.add(ms(d))
			playBase.add(ms(db))
		}
	}

	// Seek: one clientproxy, warmed up (session, catalog); each run asks
	// for bytes=N- at a new offset in a chunk no earlier run touched, on a
	// connection opened just before (a /healthz request), and reads the
	// first byte. Baseline: the same
	// Range request to plain Caddy over a warm HTTPS connection.
	cp, err := b.startClientProxy(prefix)
	if err != nil {
		return err
	}
	defer cp.Stop()
	hc := h1Client(nil, 1)
	hs := h1Client(c.roots, 1)
	if _, err := ttfb(hc, cp.url("media/"+b.bigID), "bytes=0-0"); err != nil {
		return err
	}
	const cs = 256 << 10
	nChunks := b.cfg.FileSize / cs
	// Offsets go backwards through the middle three quarters of the
	// medium, one random chunk per bucket: read-ahead (and whatever the
	// response streamed into the socket buffers before it was cut) only
	// ever runs forward, so no run lands in a chunk an earlier run cached.
	lo, hi := nChunks/8, nChunks*7/8
	step := max((hi-lo)/int64(runs), 1)
	seek, seekBase := newSample("ms"), newSample("ms")
	for i := range min(int64(runs), hi-lo) {
		bucket := hi - (i+1)*step
		off := (bucket+rand.Int64N(step))*cs + rand.Int64N(cs)
		rng := fmt.Sprintf("bytes=%d-", off)
		time.Sleep(300 * time.Millisecond) // let read-ahead of the previous run finish
		if _, err := getDiscard(bgCtx, hc, cp.url("healthz"), ""); err != nil {
			return err
		}
		d, err := ttfb(hc, cp.url("media/"+b.bigID), rng)
		if err != nil {
			return fmt.Errorf("seek: %w", err)
		}
		if _, err := getDiscard(bgCtx, hs, c.url("https", "small.bin"), ""); err != nil {
			return err
		}
		db, err := ttfb(hs, c.url("https", b.bigID), rng)
		if err != nil {
			return fmt.Errorf("seek baseline: %w", err)
		}
		seek.add(ms(d))
		seekBase.add(ms(db))
	}
	b.raw("latency", map[string]any{"play_start_ms": play, "play_start_https_ms": playBase, "seek_ms": seek, "seek_https_ms": seekBase})
	b.add(&row{Scenario: "4", Name: "play start: cold clientproxy → first byte (handshake, catalog, first chunk; default suites)",
		Product: play, BaselineName: "new HTTPS connection → first byte", Baseline: playBase,
		Target: &target{"<=", 30, "product"}, Short: "4 play start"})
	b.add(&row{Scenario: "4", Name: "seek: Range bytes=N- mid-file → first byte (warm clientproxy, uncached chunk)",
		Product: seek, BaselineName: "same Range on warm HTTPS", Baseline: seekBase,
		Target: &target{"<=", 10, "product"}, Short: "4 seek"})
	b.note("Scenario 4: Caddy+drm with the default suites (X25519MLKEM768_AES128_GCM_SHA256 negotiated) and 256 KiB chunks; " +
		"clientproxy with its defaults (--prefetch 4). Play start is measured on a clientproxy started for that run, after its " +
		"/healthz answered (which opens no session); the time excludes the process start. Seek offsets go backwards through the middle " +
		"of the medium, one per bucket, so none lies in a chunk an earlier run fetched or read ahead; each is timed on a " +
		"connection opened just before.")
	return nil
}
