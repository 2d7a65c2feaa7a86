package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-drm/caddy-drm/clientproxy"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// floodAddr is where the flood comes from: another loopback address, so
// that the listener (on 127.0.0.1) has an address of its own.
const floodAddr = "127.0.0.2"

// floodWorkers is how many connections replay the ClientHello.
const floodWorkers = 4

// floodOutcome is what one run of the flood saw.
type floodOutcome struct {
	signed, throttled, other int64 // answers: 200, 503 busy, anything else
	dur                      time.Duration
}

// floodRun replays one ClientHello on floodWorkers keep-alive connections
// from floodAddr as fast as Caddy answers, until ctx ends.
func floodRun(ctx context.Context, url string, hello []byte) floodOutcome {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(floodAddr)}, Timeout: 5 * time.Second}
	hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: floodWorkers}}
	defer hc.CloseIdleConnections()
	var signed, throttled, other atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range floodWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(hello))
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						other.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusOK:
					signed.Add(1)
				case resp.StatusCode == http.StatusServiceUnavailable:
					throttled.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return floodOutcome{signed.Load(), throttled.Load(), other.Load(), time.Since(start)}
}

// listenFor reads the medium chunk after chunk through the product's
// client for d and returns chunks per second.
func listenFor(c *clientproxy.Client, id string, nChunks int64, d time.Duration, from int64) (float64, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start, n := time.Now(), int64(0)
	for ctx.Err() == nil {
		if _, err := c.ReadChunk(ctx, id, (from+n)%nChunks); err != nil {
			if ctx.Err() != nil {
				break
			}
			return 0, 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), from + n, nil
}

// handshakeFlood is scenario 7: a listener reading a medium while one
// ClientHello is replayed at full speed from another address, with the
// per-address budget of unused handshakes on (the default) and lifted;
// the baseline is the same listener alone, in the same round.
func (b *bench) handshakeFlood() error {
	d := b.cfg.RateDur
	logf("scenario 7: a listener beside a handshake flood from %s, %d rounds of %v", floodAddr, b.cfg.RateRounds, d)
	c, err := b.startCaddy("flood", []site{drmSite("budget"), drmSite("nobudget", "unused_handshakes_per_address 1000000000")})
	if err != nil {
		return err
	}
	defer c.Stop()
	_, hello, err := (&protocol.ClientConfig{Suites: protocol.DefaultSuites()}).Start() // the hybrid group is negotiated
	if err != nil {
		return err
	}
	nChunks := b.cfg.FileSize / protocol.DefaultChunkSize
	type variant struct {
		site                    string
		alone, flooded, signed  *sample
		throttled, sessionsLeft *sample
	}
	vs := []*variant{{site: "budget"}, {site: "nobudget"}}
	for _, v := range vs {
		v.alone, v.flooded = newSample("chunks/s"), newSample("chunks/s")
		v.signed, v.throttled, v.sessionsLeft = newSample("handshakes/s"), newSample("refusals/s"), newSample("sessions")
	}
	for round := range b.cfg.RateRounds {
		for _, v := range vs {
			cl, err := b.drmClient(c.url(v.site, "drm"), nil, nil)
			if err != nil {
				return err
			}
			pos := int64(0)
			if _, pos, err = listenFor(cl, b.bigID, nChunks, b.cfg.RateWarm, pos); err != nil {
				return err
			}
			alone, pos, err := listenFor(cl, b.bigID, nChunks, d, pos)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan floodOutcome, 1)
			go func() { done <- floodRun(ctx, c.url(v.site, "drm/v1/handshake"), hello) }()
			flooded, _, err := listenFor(cl, b.bigID, nChunks, d, pos)
			cancel()
			f := <-done
			cl.Close(context.Background())
			if err != nil {
				return fmt.Errorf("listener during the flood (%s): %w", v.site, err)
			}
			if f.other > 0 {
				return fmt.Errorf("flood (%s): %d answers neither 200 nor 503", v.site, f.other)
			}
			left, err := c.sessions()
			if err != nil {
				return err
			}
			v.alone.add(alone)
			v.flooded.add(flooded)
			v.signed.add(float64(f.signed) / f.dur.Seconds())
			v.throttled.add(float64(f.throttled) / f.dur.Seconds())
			v.sessionsLeft.add(left)
			logf("  round %d %s: listener %.0f chunks/s alone, %.0f during the flood; flood %d signed, %d throttled in %v; %v sessions held",
				round+1, v.site, alone, flooded, f.signed, f.throttled, f.dur.Round(time.Millisecond), left)
		}
	}
	b.raw("handshake_flood", map[string]any{"budget": vs[0], "nobudget": vs[1]})
	on, off := vs[0], vs[1]
	b.add(&row{Scenario: "7", Name: fmt.Sprintf("listener's 256 KiB chunks/s during a full-speed ClientHello replay from another address (%d conns), default budget", floodWorkers),
		Product: on.flooded, BaselineName: "the same listener, no flood", Baseline: on.alone,
		Target: &target{">=", 0.5, "ratio"}, Short: "7 listener under flood"})
	b.add(&row{Scenario: "7", Name: "the same, with the per-address budget lifted (every replay signed)",
		Product: off.flooded, BaselineName: "the same listener, no flood", Baseline: off.alone})
	b.add(&row{Scenario: "7", Name: "flood handshakes signed per second, default budget", Product: on.signed,
		BaselineName: "budget lifted", Baseline: off.signed})
	b.add(&row{Scenario: "7", Name: "flood refused (503 busy) per second, default budget", Product: on.throttled})
	b.add(&row{Scenario: "7", Name: "sessions in the table after the flood (the listener's own, closed, excluded)", Product: on.sessionsLeft,
		Target: &target{"<=", 0, "product"}, Short: "7 sessions left by the flood"})
	b.note("Scenario 7: one clientproxy.Client reads the large medium chunk after chunk (default suites, 256 KiB chunks) for %v "+
		"alone, then for %v while %d connections from %s replay one ClientHello as fast as Caddy answers (default suites: a hybrid "+
		"key exchange and an ECDSA signature per answered replay); the listener then closes its session and caddy_drm_sessions is read "+
		"from the admin /metrics. The flood's client runs on the same 2 cores as Caddy and the listener.", d, d, floodWorkers, floodAddr)
	return nil
}

// sessions sums caddy_drm_sessions on the admin endpoint's /metrics.
func (c *caddyInst) sessions() (float64, error) {
	body, err := c.adminGet("/metrics", 10*time.Second)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, "caddy_drm_sessions{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum, nil
}
