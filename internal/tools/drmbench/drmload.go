package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddy-drm/caddy-drm/clientproxy"
	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// suitesOf parses suite names; nil (the product default) for none.
func suitesOf(names ...string) []protocol.Suite {
	if len(names) == 0 {
		return nil
	}
	s, err := protocol.ParseSuites(names)
	if err != nil {
		panic(err)
	}
	return s
}

// drmClient is the product's protocol client (the one clientproxy runs)
// for the drm endpoint at prefixURL, offering suites (nil: the default
// list). hc nil gives it its own connection pool, as in clientproxy.
func (b *bench) drmClient(prefixURL string, suites []protocol.Suite, hc *http.Client) (*clientproxy.Client, error) {
	return clientproxy.NewClient(clientproxy.ClientOptions{
		ServerURL: prefixURL, Roots: b.roots, Suites: suites, HTTPClient: hc,
	})
}

// readOrdered reads chunks [0, n) of id through the product's client,
// window requests in flight, reassembled in order into io.Discard.
func readOrdered(ctx context.Context, c *clientproxy.Client, id string, n int64, window int) (int64, error) {
	return readWindow(ctx, n, window, func(ctx context.Context, i int64) ([]byte, func(), error) {
		d, err := c.ReadChunk(ctx, id, i)
		return d, nil, err
	})
}

// readWindow fetches chunks [0, n) keeping window requests in flight (a
// slot frees when its reply has arrived, like a player's read-ahead) and
// hands them to the consumer (io.Discard) strictly in order; chunks that
// arrive early wait in a reorder buffer of at most 4×window. fetch may
// return a release function for a pooled buffer, called once consumed.
func readWindow(ctx context.Context, n int64, window int, fetch func(context.Context, int64) ([]byte, func(), error)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data    []byte
		release func()
		err     error
	}
	inflight := make(chan struct{}, window)
	ahead := make(chan struct{}, 4*window)
	order := make(chan chan result, 4*window)
	go func() {
		defer close(order)
		for i := range n {
			select {
			case ahead <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case inflight <- struct{}{}:
			case <-ctx.Done():
				return
			}
			ch := make(chan result, 1)
			go func() {
				d, rel, err := fetch(ctx, i)
				<-inflight
				ch <- result{d, rel, err}
			}()
			order <- ch
		}
	}()
	var total int64
	var firstErr error
	for ch := range order {
		r := <-ch
		<-ahead
		if r.err != nil && firstErr == nil {
			firstErr = r.err
			cancel()
		}
		if firstErr == nil {
			io.Discard.Write(r.data)
			total += int64(len(r.data))
		}
		if r.release != nil {
			r.release()
		}
	}
	return total, firstErr
}

// verifier checks the server's drm certificate against the benchmark's
// PKI, as clientproxy does.
func (b *bench) verifier() func([][]byte) (*x509.Certificate, error) {
	return keystore.ServerVerifier(b.roots, "127.0.0.1")
}

// handshake runs one full handshake against prefixURL over hc: Start,
// POST {prefix}/v1/handshake, Finish (certificate chain and transcript
// signature checked). The server keeps nothing until the session's first
// request (openSession).
func handshake(ctx context.Context, hc *http.Client, prefixURL string, cfg *protocol.ClientConfig) (*protocol.ClientSession, error) {
	hs, hello, err := cfg.Start()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(prefixURL, "/")+"/v1/handshake", bytes.NewReader(hello))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxHandshakeSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("handshake: %s (Drm-Error %q)", resp.Status, resp.Header.Get("Drm-Error"))
	}
	return hs.Finish(reply)
}

// openSession runs a handshake and the session's first request (a
// catalog), with which the server stores the session.
func openSession(ctx context.Context, hc *http.Client, prefixURL string, cfg *protocol.ClientConfig) (*protocol.ClientSession, error) {
	s, err := handshake(ctx, hc, prefixURL, cfg)
	if err != nil {
		return nil, err
	}
	req := s.NewCatalogRequest()
	reply, err := postSealed(ctx, hc, strings.TrimSuffix(prefixURL, "/")+"/v1/catalog", req.Envelope())
	if err != nil {
		return nil, err
	}
	_, err = req.OpenReply(reply)
	return s, err
}

// postSealed posts a request envelope and returns the sealed reply.
func postSealed(ctx context.Context, hc *http.Client, url string, envelope []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(envelope))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxReplySize+1))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s (Drm-Error %q)", url, resp.Status, resp.Header.Get("Drm-Error"))
	}
	return reply, err
}
