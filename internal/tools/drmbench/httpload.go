package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h1Client is the benchmark's HTTP client for baselines and players:
// HTTP/1.1 only (no HTTP/2 even over TLS), keep-alive with up to conns
// idle connections, no compression, no proxy. roots verifies https
// servers (Caddy's internal CA).
func h1Client(roots *x509.CertPool, conns int) *http.Client {
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns * 2,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		TLSClientConfig:       &tls.Config{RootCAs: roots},
		ResponseHeaderTimeout: time.Minute,
	}
	return &http.Client{Transport: t, Timeout: 5 * time.Minute}
}

func closeIdle(c *http.Client) {
	if t, ok := c.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// getDiscard GETs url and reads the whole body into io.Discard. It wants
// status 200 (206 with a Range header) and returns the bytes read.
func getDiscard(ctx context.Context, c *http.Client, url, rng string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	want := http.StatusOK
	if rng != "" {
		req.Header.Set("Range", rng)
		want = http.StatusPartialContent
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("GET %s: %s %q (Drm-Error %q)", url, resp.Status, b, resp.Header.Get("Drm-Error"))
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("GET %s: %d of %d bytes", url, n, resp.ContentLength)
	}
	return n, err
}

// ttfb sends a GET (with an optional Range) and returns the time until the
// first body byte arrived; the rest of the body is not read.
func ttfb(c *http.Client, url, rng string) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("GET %s: %s %q", url, resp.Status, b)
	}
	var one [1]byte
	if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
		return 0, fmt.Errorf("GET %s: first byte: %w", url, err)
	}
	return time.Since(t0), nil
}

// loadResult is what one fixed-duration run of workers did in its
// measured window.
type loadResult struct {
	ops       int64
	bytes     int64
	errs      int64
	firstErr  error
	window    time.Duration
	serverCPU float64 // CPU seconds of the server process in the window
}

func (r loadResult) rate() float64 { return float64(r.ops) / r.window.Seconds() }

// runLoad runs op in workers goroutines, back to back, for warm+dur; only
// operations completed in the last dur count, and the server's CPU time
// is read at the window's edges. op gets the worker number and a global
// sequence number.
func runLoad(workers int, warm, dur time.Duration, serverPid int, op func(ctx context.Context, w int, seq int64) (int64, error)) loadResult {
	ctx, cancel := context.WithTimeout(context.Background(), warm+dur+2*time.Minute)
	defer cancel()
	var ops, nbytes, errs, seq atomic.Int64
	var stop atomic.Bool
	var errOnce sync.Once
	var res loadResult
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				n, err := op(ctx, w, seq.Add(1)-1)
				if err != nil {
					errs.Add(1)
					errOnce.Do(func() { res.firstErr = err })
					if ctx.Err() != nil {
						return
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ops.Add(1)
				nbytes.Add(n)
			}
		}()
	}
	time.Sleep(warm)
	o0, b0, e0 := ops.Load(), nbytes.Load(), errs.Load()
	m := startCPU(serverPid)
	time.Sleep(dur)
	o1, b1, e1 := ops.Load(), nbytes.Load(), errs.Load()
	res.serverCPU, res.window = m.stop()
	stop.Store(true)
	wg.Wait()
	res.ops, res.bytes, res.errs = o1-o0, b1-b0, e1-e0
	return res
}

// check turns a run with failures into an error: the figures of a run
// whose requests failed are not comparable.
func (r loadResult) check(what string) error {
	if r.errs > 0 || r.ops == 0 {
		return fmt.Errorf("%s: %d ok, %d failed in the window; first error: %v", what, r.ops, r.errs, r.firstErr)
	}
	return nil
}
