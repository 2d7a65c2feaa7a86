package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// leanClient is a minimal protocol client for attributing costs: the same
// protocol package calls as clientproxy.Client (NewChunkRequest,
// OpenChunk, StartRekey/Finish), but reply buffers come from a pool, the
// reply is read straight into one (Content-Length sized) and opened in
// place, so the client allocates almost nothing per chunk. Comparing it with the
// product's client separates the server's limit from the client's.
type leanClient struct {
	hc      *http.Client
	base    string
	sess    *protocol.ClientSession
	rekeyMu sync.Mutex
	bufs    sync.Pool
}

func (b *bench) newLeanClient(ctx context.Context, prefixURL string, suites []protocol.Suite) (*leanClient, error) {
	l := &leanClient{hc: h1Client(nil, 32), base: strings.TrimSuffix(prefixURL, "/") + "/v1/"}
	l.bufs.New = func() any { s := make([]byte, 0, protocol.MaxReplySize); return &s }
	s, err := handshake(ctx, l.hc, prefixURL, &protocol.ClientConfig{Suites: suites, VerifyCertificate: b.verifier()})
	if err != nil {
		return nil, err
	}
	l.sess = s
	return l, nil
}

// post sends body and reads the reply into buf (grown if needed).
func (l *leanClient) post(ctx context.Context, endpoint string, body, buf []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.base+endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := l.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		if code := resp.Header.Get("Drm-Error"); code != "" {
			return nil, fmt.Errorf("%s: %w", endpoint, protocol.ErrorFromCode(code))
		}
		return nil, fmt.Errorf("%s: %s", endpoint, resp.Status)
	}
	n := int(resp.ContentLength)
	if n < 0 || n > protocol.MaxReplySize {
		return nil, fmt.Errorf("%s: reply length %d", endpoint, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err = io.ReadFull(resp.Body, buf)
	return buf, err
}

// readChunk fetches chunk idx and returns its plaintext in a pooled
// buffer, with the function that gives the buffers back; it rekeys when
// the server asks to, as clientproxy does.
func (l *leanClient) readChunk(ctx context.Context, id string, idx int64) ([]byte, func(), error) {
	rb := l.bufs.Get().(*[]byte)
	release := func() { l.bufs.Put(rb) }
	plain, err := l.fetch(ctx, id, idx, rb)
	if err != nil {
		release()
		return nil, nil, err
	}
	return plain, release, nil
}

func (l *leanClient) fetch(ctx context.Context, id string, idx int64, rb *[]byte) ([]byte, error) {
	var err error
	for range 4 {
		req := l.sess.NewChunkRequest(id, uint64(idx))
		var reply []byte
		reply, err = l.post(ctx, "chunk", req.Envelope(), (*rb)[:0])
		if errors.Is(err, protocol.ErrRekeyRequired) || errors.Is(err, protocol.ErrEpochRetired) {
			if err = l.rekey(ctx, req.Epoch()); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		chunk, err := req.OpenChunk(reply) // in place, in the pooled reply buffer
		if err != nil {
			return nil, err
		}
		if chunk.RekeySoon {
			err = l.rekey(ctx, req.Epoch())
		}
		return chunk.Data, err
	}
	return nil, err
}

// rekey moves the session on from epoch from, once.
func (l *leanClient) rekey(ctx context.Context, from uint32) error {
	l.rekeyMu.Lock()
	defer l.rekeyMu.Unlock()
	if l.sess.Epoch() != from {
		return nil
	}
	rk, err := l.sess.StartRekey()
	if err != nil {
		return err
	}
	reply, err := l.post(ctx, "rekey", rk.Request().Envelope(), nil)
	if err != nil {
		return err
	}
	err = rk.Finish(reply)
	if errors.Is(err, protocol.ErrEpochRetired) {
		return nil
	}
	return err
}

// readOrderedLean is readOrdered with the lean client.
func readOrderedLean(ctx context.Context, l *leanClient, id string, n int64, window int) (int64, error) {
	return readWindow(ctx, n, window, func(ctx context.Context, i int64) ([]byte, func(), error) {
		return l.readChunk(ctx, id, i)
	})
}
